//! Loading a Selinon configuration: YAML files → the configuration model.

pub mod load;
pub mod model;
pub mod yaml;

pub use load::{expand_flow_path, load_files, load_strs};
pub use model::*;
