//! The built-in predicates of `selinon.predicates`, with the parameters each takes.
//!
//! A predicate reads the task result when it has the implicit parameter `message`, and the flow
//! arguments when it has `node_args`; every other parameter must be given in the condition's
//! `args`, no more and no less.

/// What a predicate reads besides its `args`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reads {
    /// Nothing (`alwaysTrue`, `envExist`, `httpStatus`, ...).
    Nothing,
    /// The result of the task the leaf is bound to (`message`).
    Result,
    /// The flow's arguments (`node_args`).
    NodeArgs,
}

/// One built-in predicate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Builtin {
    pub name: &'static str,
    pub reads: Reads,
    /// The parameters that come from `args`, in declaration order.
    pub args: &'static [&'static str],
}

macro_rules! builtins {
    ($($name:literal => $reads:ident [$($arg:literal),*];)*) => {
        /// Every built-in predicate.
        pub const BUILTINS: &[Builtin] = &[
            $(Builtin { name: $name, reads: Reads::$reads, args: &[$($arg),*] },)*
        ];
    };
}

builtins! {
    "alwaysTrue" => Nothing [];
    "alwaysFalse" => Nothing [];
    "envExist" => Nothing ["env"];
    "envEqual" => Nothing ["env", "value"];
    "httpStatus" => Nothing ["host", "path", "status"];

    "empty" => Result [];
    "isBool" => Result [];
    "isInt" => Result [];
    "isFloat" => Result [];
    "isStr" => Result [];
    "isList" => Result [];
    "isDict" => Result [];
    "isNone" => Result [];
    "fieldExist" => Result ["key"];
    "fieldEqual" => Result ["key", "value"];
    "fieldNotEqual" => Result ["key", "value"];
    "fieldGreater" => Result ["key", "value"];
    "fieldGreaterEqual" => Result ["key", "value"];
    "fieldLess" => Result ["key", "value"];
    "fieldLessEqual" => Result ["key", "value"];
    "fieldContain" => Result ["key", "value"];
    "fieldLenEqual" => Result ["key", "length"];
    "fieldLenNotEqual" => Result ["key", "length"];
    "fieldLenGreater" => Result ["key", "length"];
    "fieldLenGreaterEqual" => Result ["key", "length"];
    "fieldLenLess" => Result ["key", "length"];
    "fieldLenLessEqual" => Result ["key", "length"];
    "fieldBool" => Result ["key"];
    "fieldInt" => Result ["key"];
    "fieldFloat" => Result ["key"];
    "fieldStr" => Result ["key"];
    "fieldList" => Result ["key"];
    "fieldDict" => Result ["key"];
    "fieldNone" => Result ["key"];
    "fieldUrlScheme" => Result ["key", "scheme"];
    "fieldUrlNetloc" => Result ["key", "netloc"];
    "fieldUrlPath" => Result ["key", "path"];

    "argsEmpty" => NodeArgs [];
    "argsIsBool" => NodeArgs [];
    "argsIsInt" => NodeArgs [];
    "argsIsFloat" => NodeArgs [];
    "argsIsStr" => NodeArgs [];
    "argsIsList" => NodeArgs [];
    "argsIsDict" => NodeArgs [];
    "argsIsNone" => NodeArgs [];
    "argsFieldExist" => NodeArgs ["key"];
    "argsFieldEqual" => NodeArgs ["key", "value"];
    "argsFieldNotEqual" => NodeArgs ["key", "value"];
    "argsFieldGreater" => NodeArgs ["key", "value"];
    "argsFieldGreaterEqual" => NodeArgs ["key", "value"];
    "argsFieldLess" => NodeArgs ["key", "value"];
    "argsFieldLessEqual" => NodeArgs ["key", "value"];
    "argsFieldContain" => NodeArgs ["key", "value"];
    "argsFieldLenEqual" => NodeArgs ["key", "length"];
    "argsFieldLenNotEqual" => NodeArgs ["key", "length"];
    "argsFieldLenGreater" => NodeArgs ["key", "length"];
    "argsFieldLenGreaterEqual" => NodeArgs ["key", "length"];
    "argsFieldLenLess" => NodeArgs ["key", "length"];
    "argsFieldLenLessEqual" => NodeArgs ["key", "length"];
    "argsFieldBool" => NodeArgs ["key"];
    "argsFieldInt" => NodeArgs ["key"];
    "argsFieldFloat" => NodeArgs ["key"];
    "argsFieldStr" => NodeArgs ["key"];
    "argsFieldList" => NodeArgs ["key"];
    "argsFieldDict" => NodeArgs ["key"];
    "argsFieldNone" => NodeArgs ["key"];
    "argsFieldUrlScheme" => NodeArgs ["key", "scheme"];
    "argsFieldUrlNetloc" => NodeArgs ["key", "netloc"];
    "argsFieldUrlPath" => NodeArgs ["key", "path"];
}

/// The built-in predicate of that name.
pub fn builtin(name: &str) -> Option<&'static Builtin> {
    BUILTINS.iter().find(|b| b.name == name)
}

/// Every built-in name, for suggestions.
pub fn names() -> impl Iterator<Item = &'static str> {
    BUILTINS.iter().map(|b| b.name)
}
