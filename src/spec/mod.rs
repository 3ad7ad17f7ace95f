//! Spec files: raw types (`raw`), loading with source positions, validation with diagnostics,
//! and the resolved model (`model`) with each flow's compiled plan (`compiled`). Raw types stop
//! here: the model replaces them (connector settings stay JSON, see `model`). `spec` may use
//! `mapping` and `contract` to compile; neither of them uses `spec`. Nothing here touches the
//! network, tokio or the state store, so the spec core stays fast to build, test and fuzz.

pub mod checks;
pub mod compiled;
pub mod diagnostic;
pub mod diff;
pub mod duration;
pub mod enrich;
pub mod env;
pub mod evidence;
pub mod explain;
pub mod filter;
pub mod guard;
pub mod load;
pub mod model;
pub mod raw;
pub mod schema;
pub mod size;
pub mod source_map;
mod templates;
mod validate;

pub use diagnostic::{Code, Diagnostic, Severity};
pub use duration::parse_duration;
pub use env::EnvLookup;
pub use load::{LoadOptions, Loaded, check_sources, load_workspace};
pub use size::{describe_size, parse_size};
