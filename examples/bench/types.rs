// The argument, result and `foreach` function types of the benchmark flows
// (`bench/bench.yml`), shared by `local_bench` and `amqp_bench` (`include!`d into their
// `bench::tasks` modules, next to each one's `Noop` task).

/// What a benchmark flow is started with (upstream's harness passes `{"i": i}`); the
/// `foreach` shape adds how many `Work` instances its `foreach` edge starts.
#[derive(Clone, Copy, Debug, serde::Serialize, serde::Deserialize)]
pub struct Item {
    pub i: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub width: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// `foreach` of the `foreach_fan` flow: `width` items (from the flow arguments).
pub fn width_items(
    _db: &selinon_runtime::Db<'_>,
    node_args: &selinon_runtime::Json,
) -> Vec<selinon_runtime::Json> {
    let width = node_args["width"].as_u64().unwrap_or(0);
    (0..width).map(selinon_runtime::Json::from).collect()
}

/// What every task returns (typed, so decoding and encoding are part of the figures).
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct Done {
    pub ok: bool,
}
