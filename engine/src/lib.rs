//! berth-engine: images, containers, volumes, networks and builds.
//!
//! The engine knows nothing about the command line (that is `cli/`), and
//! everything about where state lives on disk (see [`paths::Roots`]).

pub mod build;
pub mod compose;
pub mod container;
pub mod fsutil;
pub mod image;
pub mod layer;
pub mod network;
pub mod paths;
pub mod progress;
pub mod registry;
pub mod security;
pub mod volume;
