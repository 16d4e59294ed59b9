//! `berth compose`: multi-container applications from a compose file (the
//! common subset of the Compose specification), run with the engine's own
//! containers, networks and volumes.
//!
//! The path of a file through the modules:
//! - [`yaml`]: YAML text to a tree whose nodes know their line (yaml-rust2
//!   events; anchors, aliases, merge keys);
//! - [`interpolate`]: `${VAR:-default}` in every value, from the
//!   environment and [`dotenv`] (`.env`);
//! - [`merge`]: several files (`-f a -f b`, or an override file) merged
//!   into one tree by the Compose specification's rules;
//! - [`model`]: the tree decoded into services, volumes and networks;
//!   unknown and unsupported keys are refused with their line;
//! - [`project`]: the file found, the project named, whole-file checks,
//!   docker compose's names (`PROJECT-SERVICE-1`, `PROJECT_default`) and
//!   labels;
//! - [`graph`]: start order and stop waves from `depends_on`;
//! - [`convert`]: a service to a container create request;
//! - [`actions`]: up, down, start, stop, restart, build, pull.
//!
//! No compose state is stored anywhere: what a project owns is found again
//! by its labels, as docker compose does.

pub mod actions;
pub mod convert;
pub mod dotenv;
pub mod graph;
pub mod interpolate;
pub mod merge;
pub mod model;
pub mod project;
pub mod yaml;

pub use actions::{DownOptions, UpOptions};
pub use project::{load, LoadOptions, Project};

/// Why a compose command failed: one line saying what to do.
#[derive(Debug, thiserror::Error)]
pub enum ComposeError {
    /// A mistake in the file or the command (names the file and line when it can).
    #[error("{0}")]
    Invalid(String),
    /// A dependency did not meet its `depends_on` condition.
    #[error("{0}")]
    Dependency(String),
    #[error(transparent)]
    Lifecycle(#[from] crate::container::lifecycle::LifecycleError),
    #[error(transparent)]
    Container(#[from] crate::container::ContainerError),
    #[error(transparent)]
    Image(#[from] crate::image::ImageError),
    #[error(transparent)]
    Build(#[from] crate::build::BuildError),
    #[error(transparent)]
    Registry(#[from] crate::registry::RegistryError),
    #[error(transparent)]
    Network(#[from] crate::network::NetworkError),
    #[error(transparent)]
    Volume(#[from] crate::volume::VolumeError),
}
