//! Where berth-runtime's messages go: `--log FILE` (else stderr), as text or,
//! with `--log-format json`, one JSON object per line in the shape runc's
//! logrus writes — `{"level":"error","msg":"...","time":"..."}` — because
//! containerd's shim and podman read the last error back from that file.

use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::prelude::*;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// The destination, shared by the tracing layer and [`Logger::error`].
#[derive(Clone)]
pub struct Logger {
    file: Option<Arc<Mutex<File>>>,
    format: LogFormat,
}

impl Logger {
    pub fn init(path: Option<&Path>, format: LogFormat, debug: bool) -> Logger {
        let file = path.and_then(|p| {
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .map_err(|e| eprintln!("berth-runtime: cannot open log file {}: {e}", p.display()))
                .ok()
                .map(|f| Arc::new(Mutex::new(f)))
        });
        let logger = Logger { file, format };
        let max = if debug || std::env::var_os("BERTH_RUNTIME_DEBUG").is_some() {
            Level::DEBUG
        } else {
            Level::WARN
        };
        let layer = LineLayer {
            logger: logger.clone(),
            max,
        };
        let _ = tracing_subscriber::registry().with(layer).try_init();
        logger
    }

    /// Write one line at `level`.
    pub fn write(&self, level: &str, message: &str) {
        let line = match self.format {
            LogFormat::Json => {
                let object = serde_json::json!({
                    "level": level,
                    "msg": message,
                    "time": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
                });
                format!("{object}\n")
            }
            LogFormat::Text => format!(
                "{} {level:>7} {message}\n",
                chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
            ),
        };
        match &self.file {
            Some(file) => {
                if let Ok(mut f) = file.lock() {
                    let _ = f.write_all(line.as_bytes());
                }
            }
            None => {
                let _ = std::io::stderr().write_all(line.as_bytes());
            }
        }
    }

    /// An error: to the log (where containerd looks) and, when that is a
    /// file, also to stderr for a human or conmon.
    pub fn error(&self, message: &str) {
        if self.file.is_some() {
            self.write("error", message);
        }
        eprintln!("berth-runtime: {message}");
    }
}

struct LineLayer {
    logger: Logger,
    max: Level,
}

impl<S: Subscriber> Layer<S> for LineLayer {
    fn enabled(&self, metadata: &tracing::Metadata<'_>, _ctx: Context<'_, S>) -> bool {
        *metadata.level() <= self.max
    }

    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        if *event.metadata().level() > self.max {
            return;
        }
        let mut visitor = MessageVisitor::default();
        event.record(&mut visitor);
        let level = match *event.metadata().level() {
            Level::ERROR => "error",
            Level::WARN => "warning",
            Level::INFO => "info",
            _ => "debug",
        };
        let mut message = visitor.message;
        if !visitor.fields.is_empty() {
            let _ = write!(message, " {}", visitor.fields.join(" "));
        }
        self.logger.write(level, &message);
    }
}

#[derive(Default)]
struct MessageVisitor {
    message: String,
    fields: Vec<String>,
}

impl Visit for MessageVisitor {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.message = format!("{value:?}");
        } else {
            self.fields.push(format!("{}={value:?}", field.name()));
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message = value.to_string();
        } else {
            self.fields.push(format!("{}={value}", field.name()));
        }
    }
}
