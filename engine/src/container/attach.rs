//! The attach protocol between `berth` commands and a container's monitor.
//!
//! Mechanism: a Unix stream socket (`<state>/containers/<id>/attach.sock`, or
//! one end of a `socketpair(2)` handed to the monitor at start). Both ways,
//! data travels in frames with docker's 8-byte header:
//! `[kind, 0, 0, 0, length (u32, big endian)]` followed by `length` bytes.
//!
//! A client first sends [`Frame::Hello`] saying which streams it wants; the
//! monitor then sends output frames and, when the container's process exits,
//! one [`Frame::Exit`] with its status, after the record on disk says so.
//! `wait`, `stop` and `logs -f` attach with no streams just to learn about the
//! exit without polling.

use std::io::{self, Read, Write};

use serde::{Deserialize, Serialize};

/// What a client wants from the monitor.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
}

/// One message on the attach socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// client -> monitor: bytes for the container's stdin.
    Stdin(Vec<u8>),
    /// monitor -> client: container output.
    Stdout(Vec<u8>),
    Stderr(Vec<u8>),
    /// monitor -> client: the container's process exited with this status
    /// (128+N when signal N killed it).
    Exit(i32),
    /// client -> monitor: the terminal changed size.
    Resize {
        rows: u16,
        cols: u16,
    },
    /// client -> monitor: the client's stdin ended; close the container's.
    CloseStdin,
    /// client -> monitor: forward this signal to the container's PID 1
    /// (`--sig-proxy`).
    Signal(i32),
    /// client -> monitor: the first frame, choosing streams.
    Hello(Hello),
}

const KIND_STDIN: u8 = 0;
const KIND_STDOUT: u8 = 1;
const KIND_STDERR: u8 = 2;
const KIND_EXIT: u8 = 3;
const KIND_RESIZE: u8 = 4;
const KIND_CLOSE_STDIN: u8 = 5;
const KIND_SIGNAL: u8 = 6;
const KIND_HELLO: u8 = 7;

/// Frames larger than this are refused (a confused or hostile peer).
const MAX_FRAME: usize = 1 << 20;

impl Frame {
    fn kind_and_payload(&self) -> (u8, Vec<u8>) {
        match self {
            Frame::Stdin(data) => (KIND_STDIN, data.clone()),
            Frame::Stdout(data) => (KIND_STDOUT, data.clone()),
            Frame::Stderr(data) => (KIND_STDERR, data.clone()),
            Frame::Exit(code) => (KIND_EXIT, code.to_be_bytes().to_vec()),
            Frame::Resize { rows, cols } => {
                let mut p = rows.to_be_bytes().to_vec();
                p.extend_from_slice(&cols.to_be_bytes());
                (KIND_RESIZE, p)
            }
            Frame::CloseStdin => (KIND_CLOSE_STDIN, Vec::new()),
            Frame::Signal(sig) => (KIND_SIGNAL, sig.to_be_bytes().to_vec()),
            Frame::Hello(hello) => (
                KIND_HELLO,
                serde_json::to_vec(hello).expect("Hello serialises"),
            ),
        }
    }

    /// The frame as bytes: header then payload.
    pub fn encode(&self) -> Vec<u8> {
        let (kind, payload) = self.kind_and_payload();
        let mut out = Vec::with_capacity(8 + payload.len());
        out.extend_from_slice(&[kind, 0, 0, 0]);
        out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        out.extend_from_slice(&payload);
        out
    }

    /// Write one frame.
    pub fn write_to(&self, w: &mut impl Write) -> io::Result<()> {
        w.write_all(&self.encode())
    }

    /// Read one frame; `Ok(None)` at a clean end of stream.
    pub fn read_from(r: &mut impl Read) -> io::Result<Option<Frame>> {
        let mut header = [0u8; 8];
        if !read_exact_or_eof(r, &mut header)? {
            return Ok(None);
        }
        let len = u32::from_be_bytes([header[4], header[5], header[6], header[7]]) as usize;
        if len > MAX_FRAME {
            return Err(invalid(format!("attach frame of {len} bytes is too large")));
        }
        let mut payload = vec![0u8; len];
        r.read_exact(&mut payload)?;
        Frame::decode(header[0], payload).map(Some)
    }

    fn decode(kind: u8, payload: Vec<u8>) -> io::Result<Frame> {
        let int = |p: &[u8]| -> io::Result<i32> {
            let bytes: [u8; 4] = p.try_into().map_err(|_| invalid("bad integer frame"))?;
            Ok(i32::from_be_bytes(bytes))
        };
        Ok(match kind {
            KIND_STDIN => Frame::Stdin(payload),
            KIND_STDOUT => Frame::Stdout(payload),
            KIND_STDERR => Frame::Stderr(payload),
            KIND_EXIT => Frame::Exit(int(&payload)?),
            KIND_RESIZE if payload.len() == 4 => Frame::Resize {
                rows: u16::from_be_bytes([payload[0], payload[1]]),
                cols: u16::from_be_bytes([payload[2], payload[3]]),
            },
            KIND_CLOSE_STDIN => Frame::CloseStdin,
            KIND_SIGNAL => Frame::Signal(int(&payload)?),
            KIND_HELLO => {
                Frame::Hello(serde_json::from_slice(&payload).map_err(|e| invalid(e.to_string()))?)
            }
            other => return Err(invalid(format!("unknown attach frame kind {other}"))),
        })
    }
}

fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

/// Fill `buf` completely; false if the stream ended before the first byte.
fn read_exact_or_eof(r: &mut impl Read, buf: &mut [u8]) -> io::Result<bool> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..]) {
            Ok(0) if filled == 0 => return Ok(false),
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => filled += n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(err),
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_frame_survives_a_round_trip() {
        let frames = vec![
            Frame::Hello(Hello {
                stdin: true,
                stdout: true,
                stderr: false,
            }),
            Frame::Stdin(b"ls\n".to_vec()),
            Frame::Stdout(b"bin\n".to_vec()),
            Frame::Stderr(Vec::new()),
            Frame::Resize { rows: 24, cols: 80 },
            Frame::Signal(15),
            Frame::CloseStdin,
            Frame::Exit(137),
        ];
        let mut wire = Vec::new();
        for f in &frames {
            f.write_to(&mut wire).unwrap();
        }
        let mut reader = &wire[..];
        let mut back = Vec::new();
        while let Some(f) = Frame::read_from(&mut reader).unwrap() {
            back.push(f);
        }
        assert_eq!(back, frames);
    }

    #[test]
    fn header_matches_dockers_stream_format() {
        assert_eq!(
            Frame::Stdout(b"hi".to_vec()).encode(),
            vec![1, 0, 0, 0, 0, 0, 0, 2, b'h', b'i']
        );
    }

    #[test]
    fn truncated_and_oversized_frames_are_errors() {
        let mut short = &[1u8, 0, 0, 0, 0, 0, 0, 5, b'a'][..];
        assert!(Frame::read_from(&mut short).is_err());
        let mut huge = &[1u8, 0, 0, 0, 0xff, 0xff, 0xff, 0xff][..];
        assert!(Frame::read_from(&mut huge).is_err());
        let mut unknown = &[42u8, 0, 0, 0, 0, 0, 0, 0][..];
        assert!(Frame::read_from(&mut unknown).is_err());
    }
}
