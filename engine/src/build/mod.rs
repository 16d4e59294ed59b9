//! `berth build`: an image from a Dockerfile, the way docker's classic
//! builder makes it.
//!
//! The pieces, in the order a build uses them:
//! - [`dockerfile`]: the parser (directives, continuations, instructions,
//!   exec/shell forms, stages);
//! - [`shell`]: variable substitution (`$VAR`, `${VAR:-default}`, quotes);
//! - [`ignore`]: `.dockerignore` matching;
//! - [`executor`]: runs the stages step by step, keeps the build state
//!   (config, layers, ARG/ENV scope) and prints docker's classic output;
//! - [`cache`]: step results by parent + instruction + copied content;
//! - [`rootfs`]: the step's overlay mount and the layer left in its upper
//!   directory;
//! - [`copy`]: COPY/ADD from the context or another stage, confined by fd;
//! - [`run`]: RUN in a container through berth's own runtime.
//!
//! Every filesystem-changing step (RUN, COPY, ADD, WORKDIR that creates a
//! directory) becomes one gzip layer in the image store; metadata steps only
//! change the config and add a history entry with `empty_layer`. The image
//! is added to the store — and tagged — only after the last step succeeded,
//! so a failed build never leaves a half-tagged image.

pub mod cache;
pub mod copy;
pub mod dockerfile;
pub mod executor;
pub mod ignore;
pub mod rootfs;
pub mod run;
pub mod shell;

use std::path::PathBuf;

pub use executor::{build, BuildResult};

/// What `berth build` was asked for.
#[derive(Debug, Clone, Default)]
pub struct BuildOptions {
    /// The build context directory.
    pub context: PathBuf,
    /// The Dockerfile (default: `<context>/Dockerfile`).
    pub dockerfile: Option<PathBuf>,
    /// `-t NAME[:TAG]`, applied only when the build succeeded.
    pub tags: Vec<String>,
    /// `--build-arg NAME=VALUE` (the CLI resolves `--build-arg NAME` from its environment).
    pub build_args: Vec<(String, String)>,
    /// `--no-cache`: run every step (results are still recorded).
    pub no_cache: bool,
    /// `--target STAGE`: stop after that stage.
    pub target: Option<String>,
    /// `--network host`: RUN steps use the host's network namespace.
    pub host_network: bool,
}

/// Why a build failed: one line each, docker's wording where it has one.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Parse(#[from] dockerfile::ParseError),
    #[error("{0}")]
    Invalid(String),
    /// A RUN whose command exited non-zero (docker's message).
    #[error("The command '{command}' returned a non-zero code: {code}")]
    RunFailed { command: String, code: i32 },
    /// The RUN command could not be started (126/127 as docker's run).
    #[error("RUN: {message}")]
    Launch { code: i32, message: String },
    #[error("{instruction} failed: {error}")]
    Copy {
        instruction: &'static str,
        error: copy::CopyError,
    },
    #[error(transparent)]
    Image(#[from] crate::image::ImageError),
    #[error("{0}")]
    Setup(String),
}
