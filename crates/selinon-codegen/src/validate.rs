//! System checks: what upstream checks when it loads a configuration, plus checks for configs
//! that are certainly broken or suspicious.

use crate::config::Config;
use crate::diagnostics::Diagnostics;

/// Runs every check over a loaded configuration.
pub fn validate(_config: &Config, _diags: &mut Diagnostics) {}
