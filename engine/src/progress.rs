//! Progress bars for long work (load, save, unpack), drawn only on a terminal.
//!
//! Mechanism: `indicatif` bars on stderr; the caller decides whether they are
//! visible (the CLI checks `isatty(2)`), so scripts and tests see no escape
//! codes. The engine reports bytes; it never decides about terminals.

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A set of progress bars, possibly hidden.
#[derive(Clone)]
pub struct Progress {
    multi: Option<MultiProgress>,
}

impl Progress {
    /// Bars drawn on stderr when `visible`, else nothing at all.
    pub fn new(visible: bool) -> Progress {
        Progress {
            multi: visible.then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr())),
        }
    }

    /// No bars (library use, tests, scripts).
    pub fn hidden() -> Progress {
        Progress { multi: None }
    }

    /// A new bar of `total` bytes, labelled `label`.
    pub fn bar(&self, label: &str, total: u64) -> Bar {
        let Some(multi) = &self.multi else {
            return Bar(None);
        };
        let bar = multi.add(ProgressBar::new(total));
        let style = ProgressStyle::with_template(
            "{prefix:>14} {bar:30} {bytes:>10}/{total_bytes:<10} {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar());
        bar.set_style(style);
        bar.set_prefix(label.to_string());
        Bar(Some(bar))
    }
}

/// One bar; every method is a no-op when hidden.
pub struct Bar(Option<ProgressBar>);

impl Bar {
    pub fn advance(&self, bytes: u64) {
        if let Some(bar) = &self.0 {
            bar.inc(bytes);
        }
    }

    pub fn finish(&self, message: &str) {
        if let Some(bar) = &self.0 {
            bar.finish_with_message(message.to_string());
        }
    }
}
