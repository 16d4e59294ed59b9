//! `--explain`: what berth asks of the kernel for a container, step by step,
//! in plain words and with the real values, printed while it happens.
//!
//! Mechanism: a `tracing_subscriber` [`Layer`] fed by the very events that
//! `--log-level debug` prints. An event that performs one kernel step carries
//! a `step` field (`step = "mount"`, `"cgroup.write"`, `"clone3"`, ...) and a
//! message written with its real values where the step happens in the code
//! (runtime, engine or cli). This layer prints those messages, one line each,
//! labelled with the process that made the step — the innermost of the spans
//! `monitor`, `init` and `tenant`, else `berth` — and adds, the first time a
//! kind of step appears, a note on what it is for. Nothing is described from
//! the outside: a step the code does not announce cannot be narrated, and a
//! step it does cannot be left out.
//!
//! How the lines of three processes reach one terminal: the layer is
//! installed in the `berth` process; the monitor is forked from it and the
//! container's init is cloned from the monitor, so both run with a copy of
//! it. They write through [`berth_runtime::diagnostics`]: fd 2, which is the
//! terminal of `berth run` until the monitor reports the start (it then
//! moves its fd 2 to `<state>/containers/<id>/monitor.log`), and in the init
//! a close-on-exec copy of the fd 2 it was born with (its own fd 2 becomes
//! the container's stderr). The lines of one step go out in one `write(2)`,
//! so the steps of different processes never mix.

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::io::Write as _;
use std::sync::Mutex;

use tracing::field::{Field, Visit};
use tracing::{Event, Metadata, Subscriber};
use tracing_subscriber::layer::{Context, Filter, Layer};
use tracing_subscriber::registry::LookupSpan;

/// The spans that name a process (see the module docs), innermost wins.
const PROCESS_SPANS: [&str; 3] = ["monitor", "init", "tenant"];

/// The column of the `|` after `who pid`, plus one.
const MARGIN: usize = 15;

/// Where rendered lines go: the diagnostics fd, or a test's buffer.
type Output = Box<dyn Fn(&str) + Send + Sync>;

/// The layer; see the module docs.
pub struct ExplainLayer {
    /// Notes already printed by this process (a forked copy starts with the
    /// parent's set: no note twice from one lineage of processes).
    noted: Mutex<HashSet<String>>,
    output: Output,
}

impl Default for ExplainLayer {
    fn default() -> Self {
        ExplainLayer::with_output(Box::new(|text: &str| {
            let _ = berth_runtime::diagnostics::writer().write_all(text.as_bytes());
        }))
    }
}

/// Which callsites the layer wants: events that carry `step`, and the spans
/// that name processes (to label the events inside them).
pub struct StepsOnly;

impl<S> Filter<S> for StepsOnly {
    fn enabled(&self, meta: &Metadata<'_>, _: &Context<'_, S>) -> bool {
        if meta.is_span() {
            return PROCESS_SPANS.contains(&meta.name());
        }
        meta.fields().field("step").is_some()
    }
}

/// The line printed before the narration.
pub fn header() -> String {
    format!(
        "{:<8}{:>5} | berth --explain: one line per step berth asks of the kernel, by the process\n{:<w$}| that makes it (its pid as that process sees itself: the init is PID 1 of its namespace)\n",
        "who",
        "pid",
        "",
        w = MARGIN - 1
    )
}

impl<S> Layer<S> for ExplainLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let Some(step) = fields.values.get("step").cloned() else {
            return;
        };
        let who = process_of(event, &ctx);
        (self.output)(&self.render(who, &step, &fields));
    }
}

/// The process an event comes from: its innermost process span, else the
/// `berth` command itself.
fn process_of<S>(event: &Event<'_>, ctx: &Context<'_, S>) -> &'static str
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    ctx.event_scope(event)
        .and_then(|scope| {
            scope
                .from_root()
                .filter(|span| PROCESS_SPANS.contains(&span.name()))
                .last()
                .map(|span| span.name())
        })
        .unwrap_or("berth")
}

impl ExplainLayer {
    fn with_output(output: Output) -> ExplainLayer {
        ExplainLayer {
            noted: Mutex::new(HashSet::new()),
            output,
        }
    }

    /// The lines for one step: the message, its details, and (once) a note.
    fn render(&self, who: &str, step: &str, fields: &Fields) -> String {
        let prefix = format!("{:<8}{:>5} | ", who, std::process::id());
        let blank = format!("{:<w$}| ", "", w = MARGIN - 1);
        let mut out = String::new();
        let _ = writeln!(out, "{prefix}{}", fields.message);
        for line in details(step, fields) {
            let _ = writeln!(out, "{blank}    {line}");
        }
        if let Some((key, note)) = note(step, fields) {
            let mut noted = self.noted.lock().unwrap_or_else(|e| e.into_inner());
            if noted.insert(key) {
                let _ = writeln!(out, "{blank}    ({note})");
            }
        }
        out
    }
}

/// Extra lines for steps whose message packs several values in one string.
fn details(step: &str, fields: &Fields) -> Vec<String> {
    match step {
        // lowerdir=a:b:c,upperdir=u,workdir=w: one line per directory.
        "overlay" => {
            let options = fields
                .values
                .get("options")
                .map(String::as_str)
                .unwrap_or("");
            let mut lines = Vec::new();
            for option in options.split(',') {
                match option.split_once('=') {
                    Some(("lowerdir", dirs)) => {
                        for (i, dir) in dirs.split(':').enumerate() {
                            let role = if i == 0 {
                                "lowerdir (top layer first)"
                            } else {
                                ""
                            };
                            lines.push(format!("{role:<26} {dir}"));
                        }
                    }
                    Some(("upperdir", dir)) => {
                        lines.push(format!("{:<26} {dir}", "upperdir (its writes)"))
                    }
                    Some(("workdir", dir)) => {
                        lines.push(format!("{:<26} {dir}", "workdir (overlay scratch)"))
                    }
                    _ => {}
                }
            }
            lines
        }
        _ => Vec::new(),
    }
}

/// What a kind of step is for, keyed so that each note is printed once.
fn note(step: &str, fields: &Fields) -> Option<(String, &'static str)> {
    let text = match step {
        "monitor" => "the container will be the monitor's child: it reaps the exit status, keeps the log and serves attach",
        "overlay" => "overlayfs shows the read-only image layers merged, the top one winning, with the container's own upperdir above them: writes go there, a deleted file becomes a whiteout there",
        "netns" => "a network namespace has its own interfaces, addresses, routes and ports",
        "veth" => "a veth pair is a virtual cable: what enters one end leaves the other, here from the container's namespace to the bridge",
        "nft" => "DNAT: the kernel rewrites the destination of a packet to this host port before routing it to the container",
        "bundle" => "config.json is the OCI runtime spec: every step below is read from it",
        "cgroup.layout" => "v1 has one hierarchy per controller (/sys/fs/cgroup/memory, ...); v2 one unified tree; a hybrid host has both",
        "cgroup.mkdir" => "a cgroup is a directory of cgroupfs: its files are the controls and the counters",
        "cgroup.devices" => "cgroup v2 has no devices files: a BPF program attached to the cgroup decides every open of a device node",
        "cgroup.write" => return cgroup_file_note(fields),
        "clone3" => "each CLONE_NEW* flag is one new namespace for the child; CLONE_INTO_CGROUP has it born inside its cgroup",
        "mount" => "these mounts happen in the container's own mount namespace, on targets resolved inside the rootfs, before pivot_root",
        "mask" => "masking hides kernel interfaces the container must not read",
        "pivot_root" => "after this, no path leads out of the rootfs",
        "capabilities.bounding" => "the bounding set is a ceiling: no execve, not even of a setuid-root program, gains a capability outside it",
        "capabilities" => "root inside the container is only as strong as these capabilities",
        "seccomp" => "a syscall the profile refuses fails with an error (or kills the process) in the kernel, before it runs",
        "start" => "create and start are two steps (as in runc): the init waits, fully set up, until start opens this fifo",
        "execve" => "same pid, new program: the fds berth kept marked close-on-exec vanish now",
        _ => return None,
    };
    Some((text.to_string(), text))
}

/// Notes for the cgroup files berth writes, keyed by file name.
fn cgroup_file_note(fields: &Fields) -> Option<(String, &'static str)> {
    let path = fields.values.get("path")?;
    let file = path.rsplit('/').next()?;
    let text = match file {
        "cgroup.procs" => "writing a pid to cgroup.procs moves the process: it and its future children are counted and limited there",
        "tasks" => "a v1 `tasks` file moves one thread; written by the new process itself (`0`), it skips the kernel's global migration lock and the RCU grace period that lock waits for",
        "memory.limit_in_bytes" | "memory.max" => "the memory limit: beyond it the kernel reclaims, then its OOM killer ends a process of the container",
        "memory.memsw.limit_in_bytes" | "memory.swap.max" => "memory plus swap (v1) or swap alone (v2) the container may use",
        "cpu.cfs_quota_us" | "cpu.cfs_period_us" | "cpu.max" => "CPU bandwidth: at most `quota` microseconds of CPU time per `period`",
        "cpu.shares" | "cpu.weight" => "relative CPU weight, used only when CPUs are contended",
        "pids.max" => "the number of processes: fork and clone fail with EAGAIN beyond it",
        "devices.deny" | "devices.allow" => "the v1 device controller: `a` denies every device, then each allow line opens one (type major:minor access)",
        "cpuset.cpus" | "cpuset.mems" => "a v1 cpuset accepts no process until cpus and mems are set: copied from the parent",
        _ => return None,
    };
    Some((text.to_string(), text))
}

/// An event's fields as text (`message` apart).
#[derive(Default)]
struct Fields {
    message: String,
    values: BTreeMap<String, String>,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message = value.to_string();
        } else {
            self.values
                .insert(field.name().to_string(), value.to_string());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let text = format!("{value:?}");
        if field.name() == "message" {
            self.message = text;
        } else {
            self.values.insert(field.name().to_string(), text);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex as StdMutex};
    use tracing_subscriber::layer::SubscriberExt;

    fn fields(pairs: &[(&str, &str)], message: &str) -> Fields {
        Fields {
            message: message.to_string(),
            values: pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    #[test]
    fn overlay_options_become_one_line_per_directory() {
        let f = fields(
            &[(
                "options",
                "lowerdir=/l/b:/l/a,upperdir=/c/upper,workdir=/c/work",
            )],
            "mount(...)",
        );
        let lines = details("overlay", &f);
        assert_eq!(lines.len(), 4, "{lines:?}");
        assert!(lines[0].starts_with("lowerdir (top layer first)") && lines[0].ends_with(" /l/b"));
        assert!(lines[1].trim() == "/l/a", "{lines:?}");
        assert!(lines[2].starts_with("upperdir") && lines[2].ends_with("/c/upper"));
        assert!(lines[3].starts_with("workdir") && lines[3].ends_with("/c/work"));
    }

    #[test]
    fn a_note_is_printed_once_per_kind_of_step() {
        let layer = ExplainLayer::default();
        let f = fields(
            &[("path", "/sys/fs/cgroup/pids/berth/x/pids.max")],
            "wrote 5 to ...",
        );
        let first = layer.render("monitor", "cgroup.write", &f);
        let second = layer.render("monitor", "cgroup.write", &f);
        assert!(first.contains("EAGAIN"), "{first}");
        assert!(!second.contains("EAGAIN"), "{second}");
        assert!(second.contains("wrote 5 to ..."));
    }

    #[test]
    fn steps_are_narrated_with_their_process_and_other_events_are_not() {
        use tracing_subscriber::Layer as _;
        let printed = Arc::new(StdMutex::new(String::new()));
        let sink = printed.clone();
        let layer = ExplainLayer::with_output(Box::new(move |text: &str| {
            sink.lock().unwrap().push_str(text);
        }));
        let subscriber = tracing_subscriber::registry().with(layer.with_filter(StepsOnly));
        tracing::subscriber::with_default(subscriber, || {
            tracing::debug!(step = "image", "image found");
            tracing::debug!("a debug event without a step");
            let _m = tracing::debug_span!("monitor").entered();
            tracing::debug!(step = "bundle", "bundle written");
            let _i = tracing::debug_span!("init").entered();
            tracing::debug!(step = "pivot_root", "pivot_root into /r");
        });
        let printed = printed.lock().unwrap();
        let lines: Vec<&str> = printed.lines().filter(|l| !l.contains("    (")).collect();
        let pid = std::process::id();
        assert_eq!(
            lines,
            vec![
                format!("berth   {pid:>5} | image found"),
                format!("monitor {pid:>5} | bundle written"),
                format!("init    {pid:>5} | pivot_root into /r"),
            ],
            "{printed}"
        );
    }
}
