//! Container logs in docker's `json-file` format.
//!
//! Each line a container writes becomes one JSON object per line in
//! `<id>-json.log`: `{"log":"hello\n","stream":"stdout","time":"<RFC3339Nano>"}`.
//! The monitor is the only writer (it reads the container's stdout/stderr
//! pipes); `berth logs` reads the file and, with `-f`, follows it.
//!
//! A line longer than [`MAX_LINE`] is split into several records, as docker
//! splits at 16 KiB; a final line without a newline is written at EOF.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Write};

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

/// Longest piece of a line stored in one record (docker uses 16 KiB).
pub const MAX_LINE: usize = 16 * 1024;

/// Which output a record came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    Stdout,
    Stderr,
}

/// One record of the log file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogRecord {
    pub log: String,
    pub stream: Stream,
    pub time: DateTime<Utc>,
}

impl LogRecord {
    /// docker's timestamp format for `logs -t`: RFC 3339 with nanoseconds.
    pub fn timestamp(&self) -> String {
        self.time.to_rfc3339_opts(SecondsFormat::Nanos, true)
    }
}

/// Turns chunks read from a pipe into complete lines, per stream.
#[derive(Debug, Default)]
pub struct LineSplitter {
    pending: Vec<u8>,
}

impl LineSplitter {
    /// Feed bytes; returns the complete lines (each ending in `\n`, or a
    /// [`MAX_LINE`]-long piece of a longer line).
    pub fn push(&mut self, data: &[u8]) -> Vec<Vec<u8>> {
        self.pending.extend_from_slice(data);
        let mut lines = Vec::new();
        loop {
            let cut = match self.pending.iter().position(|&b| b == b'\n') {
                Some(newline) if newline < MAX_LINE => newline + 1,
                _ if self.pending.len() >= MAX_LINE => MAX_LINE,
                _ => break,
            };
            lines.push(self.pending.drain(..cut).collect());
        }
        lines
    }

    /// What is left when the stream ends (a last line without newline).
    pub fn finish(&mut self) -> Option<Vec<u8>> {
        (!self.pending.is_empty()).then(|| std::mem::take(&mut self.pending))
    }
}

/// Appends records to a container's log file.
#[derive(Debug)]
pub struct LogWriter {
    file: File,
}

impl LogWriter {
    pub fn open(path: &std::path::Path) -> io::Result<LogWriter> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        Ok(LogWriter { file })
    }

    /// Write one line of `stream` with the current time. Invalid UTF-8 is
    /// replaced, as docker's JSON encoder does.
    pub fn write_line(&mut self, stream: Stream, line: &[u8]) -> io::Result<()> {
        let record = LogRecord {
            log: String::from_utf8_lossy(line).into_owned(),
            stream,
            time: Utc::now(),
        };
        let mut text = serde_json::to_vec(&record).map_err(io::Error::other)?;
        text.push(b'\n');
        self.file.write_all(&text)
    }
}

/// Which records `berth logs` shows.
#[derive(Debug, Clone, Default)]
pub struct LogFilter {
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    /// Only the last N records (`--tail N`); None shows all.
    pub tail: Option<usize>,
}

impl LogFilter {
    pub fn admits(&self, record: &LogRecord) -> bool {
        self.since.is_none_or(|since| record.time >= since)
            && self.until.is_none_or(|until| record.time <= until)
    }
}

/// Read every record of a log file that passes `filter`. A torn last line
/// (being written right now) is left for the next read.
pub fn read_records(
    reader: &mut BufReader<File>,
    filter: &LogFilter,
) -> io::Result<Vec<LogRecord>> {
    let mut records = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        let read = reader.read_line(&mut line)?;
        if read == 0 {
            break;
        }
        if !line.ends_with('\n') {
            // Incomplete record: rewind so a follower reads it whole later.
            reader.seek_relative(-(read as i64))?;
            break;
        }
        match serde_json::from_str::<LogRecord>(&line) {
            Ok(record) if filter.admits(&record) => records.push(record),
            Ok(_) => {}
            Err(err) => tracing::warn!(%err, "skipping a malformed log record"),
        }
    }
    if let Some(tail) = filter.tail {
        let skip = records.len().saturating_sub(tail);
        records.drain(..skip);
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitter_keeps_partial_lines_until_their_newline() {
        let mut s = LineSplitter::default();
        assert!(s.push(b"hel").is_empty());
        assert_eq!(s.push(b"lo\nwor"), vec![b"hello\n".to_vec()]);
        assert_eq!(s.push(b"ld\n\n"), vec![b"world\n".to_vec(), b"\n".to_vec()]);
        assert_eq!(s.push(b"tail"), Vec::<Vec<u8>>::new());
        assert_eq!(s.finish(), Some(b"tail".to_vec()));
        assert_eq!(s.finish(), None);
    }

    #[test]
    fn splitter_cuts_overlong_lines_at_16k() {
        let mut s = LineSplitter::default();
        let long = vec![b'x'; MAX_LINE + 10];
        let lines = s.push(&long);
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0].len(), MAX_LINE);
        assert_eq!(s.finish().unwrap().len(), 10);
    }

    #[test]
    fn written_records_read_back_with_tail_and_time_filters() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c-json.log");
        let mut w = LogWriter::open(&path).unwrap();
        for i in 0..5 {
            w.write_line(Stream::Stdout, format!("line {i}\n").as_bytes())
                .unwrap();
        }
        w.write_line(Stream::Stderr, b"oops\n").unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("{\"log\":\"line 0\\n\",\"stream\":\"stdout\",\"time\":\""));

        let mut reader = BufReader::new(File::open(&path).unwrap());
        let all = read_records(&mut reader, &LogFilter::default()).unwrap();
        assert_eq!(all.len(), 6);
        assert_eq!(all[5].stream, Stream::Stderr);

        let mut reader = BufReader::new(File::open(&path).unwrap());
        let last = read_records(
            &mut reader,
            &LogFilter {
                tail: Some(2),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(
            last.iter().map(|r| r.log.as_str()).collect::<Vec<_>>(),
            vec!["line 4\n", "oops\n"]
        );

        let future = Utc::now() + chrono::Duration::hours(1);
        let mut reader = BufReader::new(File::open(&path).unwrap());
        let none = read_records(
            &mut reader,
            &LogFilter {
                since: Some(future),
                ..Default::default()
            },
        )
        .unwrap();
        assert!(none.is_empty());
    }

    #[test]
    fn a_torn_record_is_left_for_the_next_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c-json.log");
        std::fs::write(
            &path,
            "{\"log\":\"a\\n\",\"stream\":\"stdout\",\"time\":\"2024-01-01T00:00:00Z\"}\n{\"log\":",
        )
        .unwrap();
        let mut reader = BufReader::new(File::open(&path).unwrap());
        assert_eq!(
            read_records(&mut reader, &LogFilter::default())
                .unwrap()
                .len(),
            1
        );
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        f.write_all(b"\"b\\n\",\"stream\":\"stderr\",\"time\":\"2024-01-01T00:00:01Z\"}\n")
            .unwrap();
        let more = read_records(&mut reader, &LogFilter::default()).unwrap();
        assert_eq!(more.len(), 1);
        assert_eq!(more[0].log, "b\n");
    }
}
