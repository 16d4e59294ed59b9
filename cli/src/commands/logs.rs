//! `berth logs`: print a container's json-file log; `-f` follows it.
//!
//! Following uses `inotify(7)` on the log file (IN_MODIFY) and the container's
//! monitor socket: when the monitor reports the exit, the rest of the file is
//! printed and the command ends, as `docker logs -f` does.

use std::fs::File;
use std::io::{BufReader, Write};
use std::os::fd::AsFd;

use anyhow::{bail, Context as _};
use berth_engine::container::attach::{Frame, Hello};
use berth_engine::container::logs::{read_records, LogFilter, LogRecord, Stream};
use berth_engine::container::{lifecycle, monitor};
use chrono::{DateTime, Utc};
use clap::Args;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};

use crate::commands::Context;

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// Follow log output.
    #[arg(short, long)]
    pub follow: bool,
    /// Number of lines to show from the end of the logs ("all" for every line).
    #[arg(short = 'n', long, default_value = "all")]
    pub tail: String,
    /// Show timestamps.
    #[arg(short, long)]
    pub timestamps: bool,
    /// Show logs since a timestamp (2013-01-02T13:23:37Z) or relative (42m).
    #[arg(long)]
    pub since: Option<String>,
    /// Show logs before a timestamp (2013-01-02T13:23:37Z) or relative (42m).
    #[arg(long)]
    pub until: Option<String>,
    pub container: String,
}

pub fn run(args: LogsArgs, ctx: &Context) -> anyhow::Result<u8> {
    let record = lifecycle::find(&ctx.roots, &args.container)?;
    let filter = LogFilter {
        since: args.since.as_deref().map(parse_time).transpose()?,
        until: args.until.as_deref().map(parse_time).transpose()?,
        tail: match args.tail.as_str() {
            "all" | "-1" => None,
            n => Some(
                n.parse()
                    .with_context(|| format!("invalid --tail {n:?}: use a number or \"all\""))?,
            ),
        },
    };
    let path = ctx
        .roots
        .containers()
        .join(&record.id)
        .join(format!("{}-json.log", record.id));
    // Attach before reading, so an exit between the two is not missed.
    let watch = if args.follow && record.state.status.is_active() {
        monitor::connect(&ctx.roots, &record.id, Hello::default()).ok()
    } else {
        None
    };
    let file = match File::open(&path) {
        Ok(file) => file,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(err) => return Err(err).with_context(|| format!("open {}", path.display())),
    };
    let mut reader = BufReader::new(file);
    print_records(&read_records(&mut reader, &filter)?, args.timestamps)?;
    let Some(mut watch) = watch else { return Ok(0) };

    let follow_filter = LogFilter {
        tail: None,
        ..filter
    };
    let inotify = Inotify::init(InitFlags::IN_CLOEXEC)?;
    inotify.add_watch(&path, AddWatchFlags::IN_MODIFY)?;
    loop {
        let mut fds = [
            PollFd::new(inotify.as_fd(), PollFlags::POLLIN),
            PollFd::new(watch.as_fd(), PollFlags::POLLIN),
        ];
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(err) => return Err(err.into()),
        }
        let file_changed = fds[0].revents().is_some_and(|r| !r.is_empty());
        let monitor_spoke = fds[1].revents().is_some_and(|r| !r.is_empty());
        if file_changed {
            let _ = inotify.read_events();
        }
        print_records(&read_records(&mut reader, &follow_filter)?, args.timestamps)?;
        if monitor_spoke {
            match Frame::read_from(&mut watch) {
                Ok(Some(Frame::Exit(_))) | Ok(None) | Err(_) => {
                    print_records(&read_records(&mut reader, &follow_filter)?, args.timestamps)?;
                    return Ok(0);
                }
                Ok(Some(_)) => {}
            }
        }
    }
}

fn print_records(records: &[LogRecord], timestamps: bool) -> anyhow::Result<()> {
    let stdout = std::io::stdout();
    let stderr = std::io::stderr();
    let (mut out, mut err) = (stdout.lock(), stderr.lock());
    for record in records {
        let target: &mut dyn Write = match record.stream {
            Stream::Stdout => &mut out,
            Stream::Stderr => &mut err,
        };
        if timestamps {
            write!(target, "{} ", record.timestamp())?;
        }
        target.write_all(record.log.as_bytes())?;
    }
    out.flush()?;
    err.flush()?;
    Ok(())
}

/// RFC 3339 (`2013-01-02T13:23:37Z`), a Unix timestamp, or a duration ago
/// (`42m`, `2h`, `10s`).
fn parse_time(text: &str) -> anyhow::Result<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&Utc));
    }
    if let Ok(seconds) = text.parse::<f64>() {
        let nanos = (seconds.fract() * 1e9) as u32;
        if let Some(t) = DateTime::from_timestamp(seconds.trunc() as i64, nanos) {
            return Ok(t);
        }
    }
    let (number, unit) = text.split_at(
        text.find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len()),
    );
    let amount: i64 = number.parse().ok().filter(|_| !unit.is_empty()).with_context(|| {
        format!("invalid time {text:?}: use RFC 3339 (2013-01-02T13:23:37Z), a Unix timestamp, or a duration like 42m")
    })?;
    let duration = match unit {
        "s" => chrono::Duration::seconds(amount),
        "m" => chrono::Duration::minutes(amount),
        "h" => chrono::Duration::hours(amount),
        _ => bail!("invalid time {text:?}: the duration unit must be s, m or h"),
    };
    Ok(Utc::now() - duration)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_as_rfc3339_unix_or_relative() {
        assert_eq!(
            parse_time("2013-01-02T13:23:37Z").unwrap().timestamp(),
            1357133017
        );
        assert_eq!(parse_time("1357133017").unwrap().timestamp(), 1357133017);
        let ago = Utc::now() - parse_time("42m").unwrap();
        assert!((41..=42).contains(&ago.num_minutes()));
        assert!(parse_time("yesterday").is_err());
        assert!(parse_time("5d").is_err());
    }
}
