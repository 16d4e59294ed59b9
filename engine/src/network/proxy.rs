//! The user-space port proxy, for what kernel DNAT cannot serve: IPv6 host
//! addresses (a v6 connection cannot be translated to a container's v4
//! address) and, with `BERTH_USERLAND_PROXY=1`, loopback connections
//! (docker's `userland-proxy` mode, which avoids `route_localnet`).
//!
//! Mechanism: one small process per container, forked by its monitor,
//! that dies with it (`prctl(PR_SET_PDEATHSIG, SIGKILL)`), and runs one
//! `poll(2)` loop over non-blocking sockets:
//! - TCP: `accept4(2)` a client, `connect(2)` to the container's address,
//!   then move bytes in both directions with `splice(2)` through a pipe per
//!   direction, so the data never enters user space; a half-close
//!   (`shutdown(SHUT_WR)`) is passed on once a direction's pipe is drained;
//! - UDP: each client address gets its own connected socket to the
//!   container (so replies can be told apart); idle flows expire after a
//!   minute.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use rustix::net::{AddressFamily, RecvFlags, SendFlags, Shutdown, SocketFlags, SocketType};
use rustix::pipe::SpliceFlags;

use super::ports::Protocol;

/// How long a UDP flow lives without traffic.
const UDP_IDLE: Duration = Duration::from_secs(60);
/// Bytes moved per splice call, and the pipe size asked for.
const CHUNK: usize = 1 << 20;

/// One host socket to serve and where its traffic goes.
#[derive(Debug)]
pub struct ProxyTarget {
    /// A listening TCP socket or a bound UDP socket.
    pub socket: OwnedFd,
    pub protocol: Protocol,
    pub target: SocketAddr,
}

/// The proxy process of a container.
#[derive(Debug)]
pub struct ProxyProcess {
    pub pid: i32,
    pidfd: OwnedFd,
}

impl ProxyProcess {
    /// Fork the proxy. Only call from a single-threaded process (the monitor).
    pub fn spawn(targets: Vec<ProxyTarget>) -> io::Result<ProxyProcess> {
        let parent = std::process::id() as i32;
        // SAFETY: the monitor is single-threaded, so the child may run any
        // code; it closes every inherited fd it does not serve right away.
        match unsafe { nix::unistd::fork() }.map_err(io::Error::from)? {
            nix::unistd::ForkResult::Child => {
                // SAFETY: PR_SET_PDEATHSIG takes a signal number.
                unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) };
                if nix::unistd::getppid().as_raw() != parent {
                    // SAFETY: _exit skips the parent's destructors.
                    unsafe { libc::_exit(0) };
                }
                let keep: Vec<RawFd> = targets.iter().map(|t| t.socket.as_raw_fd()).collect();
                close_other_fds(&keep);
                let _ = nix::sys::signal::SigSet::all().thread_unblock();
                let _ = serve(targets, None);
                // SAFETY: as above.
                unsafe { libc::_exit(0) }
            }
            nix::unistd::ForkResult::Parent { child } => {
                let pidfd = rustix::process::pidfd_open(
                    rustix::process::Pid::from_raw(child.as_raw())
                        .expect("a child pid is positive"),
                    rustix::process::PidfdFlags::empty(),
                )?;
                tracing::debug!(pid = child.as_raw(), "port proxy started");
                Ok(ProxyProcess {
                    pid: child.as_raw(),
                    pidfd,
                })
            }
        }
    }

    /// Kill the proxy (through its pidfd: never another process that got
    /// its pid) and reap it if it is still our unreaped child.
    pub fn stop(self) {
        let _ = rustix::process::pidfd_send_signal(&self.pidfd, rustix::process::Signal::KILL);
        let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(self.pid), None);
    }
}

/// Close every fd but 0, 1, 2 and `keep`; stdio goes to /dev/null (the
/// proxy must not hold the terminal or the pipe of the command that started
/// the container).
fn close_other_fds(keep: &[RawFd]) {
    if let Ok(null) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
    {
        let _ = nix::unistd::dup2_stdin(&null);
        let _ = nix::unistd::dup2_stdout(&null);
        let _ = nix::unistd::dup2_stderr(&null);
    }
    let open: Vec<RawFd> = std::fs::read_dir("/proc/self/fd")
        .map(|dir| {
            dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    for fd in open {
        if fd > 2 && !keep.contains(&fd) {
            // SAFETY: closing an fd number this process owns and no Rust
            // object of the child will use again (the loop below only uses `keep`).
            unsafe { libc::close(fd) };
        }
    }
}

/// One direction of a TCP connection: bytes sit in `pipe` between the two
/// splices.
struct Direction {
    pipe_r: OwnedFd,
    pipe_w: OwnedFd,
    in_pipe: usize,
    source_done: bool,
    shut: bool,
}

impl Direction {
    fn new() -> io::Result<Direction> {
        let (pipe_r, pipe_w) = rustix::pipe::pipe_with(
            rustix::pipe::PipeFlags::CLOEXEC | rustix::pipe::PipeFlags::NONBLOCK,
        )?;
        let _ = rustix::pipe::fcntl_setpipe_size(&pipe_w, CHUNK);
        Ok(Direction {
            pipe_r,
            pipe_w,
            in_pipe: 0,
            source_done: false,
            shut: false,
        })
    }

    /// Move what can be moved now from `from` to `to`; Err when the
    /// connection is broken.
    fn pump(&mut self, from: BorrowedFd<'_>, to: BorrowedFd<'_>) -> io::Result<()> {
        let flags = SpliceFlags::NONBLOCK | SpliceFlags::MOVE;
        loop {
            let mut progressed = false;
            if !self.source_done && self.in_pipe < CHUNK {
                match rustix::pipe::splice(from, None, &self.pipe_w, None, CHUNK, flags) {
                    Ok(0) => self.source_done = true,
                    Ok(n) => {
                        self.in_pipe += n;
                        progressed = true;
                    }
                    Err(rustix::io::Errno::AGAIN) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            if self.in_pipe > 0 {
                match rustix::pipe::splice(&self.pipe_r, None, to, None, self.in_pipe, flags) {
                    Ok(n) => {
                        self.in_pipe -= n;
                        progressed |= n > 0;
                    }
                    Err(rustix::io::Errno::AGAIN) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            if self.source_done && self.in_pipe == 0 && !self.shut {
                let _ = rustix::net::shutdown(to, Shutdown::Write);
                self.shut = true;
            }
            if !progressed {
                return Ok(());
            }
        }
    }

    fn finished(&self) -> bool {
        self.shut
    }
}

struct TcpConn {
    client: OwnedFd,
    upstream: OwnedFd,
    connected: bool,
    up: Direction,
    down: Direction,
}

struct UdpFlow {
    listener: usize,
    client: SocketAddr,
    upstream: OwnedFd,
    last: Instant,
}

/// What a poll slot stands for.
#[derive(Clone, Copy)]
enum Slot {
    Stop,
    Listener(usize),
    Conn(usize),
    Flow(usize),
}

/// The proxy loop. Returns when `stop` becomes readable (tests) or on a
/// poll failure; in the proxy process it runs until the process is killed.
pub fn serve(targets: Vec<ProxyTarget>, stop: Option<BorrowedFd<'_>>) -> io::Result<()> {
    for t in &targets {
        set_nonblocking(t.socket.as_fd())?;
    }
    let mut conns: Vec<Option<TcpConn>> = Vec::new();
    let mut flows: Vec<Option<UdpFlow>> = Vec::new();
    let mut flow_of: HashMap<(usize, SocketAddr), usize> = HashMap::new();
    loop {
        let mut slots = Vec::new();
        let mut fds = Vec::new();
        if let Some(fd) = stop {
            slots.push(Slot::Stop);
            fds.push(PollFd::new(fd, PollFlags::POLLIN));
        }
        for (i, t) in targets.iter().enumerate() {
            slots.push(Slot::Listener(i));
            fds.push(PollFd::new(t.socket.as_fd(), PollFlags::POLLIN));
        }
        for (i, conn) in conns.iter().enumerate() {
            let Some(c) = conn else { continue };
            if !c.connected {
                slots.push(Slot::Conn(i));
                fds.push(PollFd::new(c.upstream.as_fd(), PollFlags::POLLOUT));
                continue;
            }
            let (mut client_events, mut upstream_events) = (PollFlags::empty(), PollFlags::empty());
            if !c.up.source_done && c.up.in_pipe < CHUNK {
                client_events |= PollFlags::POLLIN;
            }
            if c.up.in_pipe > 0 {
                upstream_events |= PollFlags::POLLOUT;
            }
            if !c.down.source_done && c.down.in_pipe < CHUNK {
                upstream_events |= PollFlags::POLLIN;
            }
            if c.down.in_pipe > 0 {
                client_events |= PollFlags::POLLOUT;
            }
            slots.push(Slot::Conn(i));
            fds.push(PollFd::new(c.client.as_fd(), client_events));
            slots.push(Slot::Conn(i));
            fds.push(PollFd::new(c.upstream.as_fd(), upstream_events));
        }
        for (i, flow) in flows.iter().enumerate() {
            if let Some(f) = flow {
                slots.push(Slot::Flow(i));
                fds.push(PollFd::new(f.upstream.as_fd(), PollFlags::POLLIN));
            }
        }
        let timeout = if flows.iter().any(Option::is_some) {
            PollTimeout::from(5000u16)
        } else {
            PollTimeout::NONE
        };
        match poll(&mut fds, timeout) {
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
        let ready: Vec<Slot> = slots
            .iter()
            .zip(&fds)
            .filter(|(_, p)| p.revents().is_some_and(|r| !r.is_empty()))
            .map(|(s, _)| *s)
            .collect();
        drop(fds);
        for slot in ready {
            match slot {
                Slot::Stop => return Ok(()),
                Slot::Listener(i) => match targets[i].protocol {
                    Protocol::Tcp => accept_client(&targets[i], &mut conns),
                    Protocol::Udp => forward_datagram(i, &targets[i], &mut flows, &mut flow_of),
                },
                Slot::Conn(i) => {
                    let broken = match conns[i].as_mut() {
                        Some(c) => advance(c).is_err() || (c.up.finished() && c.down.finished()),
                        None => false,
                    };
                    if broken {
                        conns[i] = None;
                    }
                }
                Slot::Flow(i) => {
                    if let Some(f) = flows[i].as_mut() {
                        reply_datagram(f, &targets[f.listener]);
                    }
                }
            }
        }
        expire_flows(&mut flows, &mut flow_of);
        while conns.last().is_some_and(Option::is_none) {
            conns.pop();
        }
    }
}

fn set_nonblocking(fd: BorrowedFd<'_>) -> io::Result<()> {
    let flags = rustix::fs::fcntl_getfl(fd)?;
    rustix::fs::fcntl_setfl(fd, flags | rustix::fs::OFlags::NONBLOCK)?;
    Ok(())
}

fn family_of(addr: &SocketAddr) -> AddressFamily {
    if addr.is_ipv4() {
        AddressFamily::INET
    } else {
        AddressFamily::INET6
    }
}

fn accept_client(target: &ProxyTarget, conns: &mut Vec<Option<TcpConn>>) {
    loop {
        let client = match rustix::net::accept_with(
            &target.socket,
            SocketFlags::NONBLOCK | SocketFlags::CLOEXEC,
        ) {
            Ok(fd) => fd,
            Err(_) => return,
        };
        let upstream = match rustix::net::socket_with(
            family_of(&target.target),
            SocketType::STREAM,
            SocketFlags::NONBLOCK | SocketFlags::CLOEXEC,
            None,
        ) {
            Ok(fd) => fd,
            Err(_) => continue,
        };
        let connected = match rustix::net::connect(&upstream, &target.target) {
            Ok(()) => true,
            Err(rustix::io::Errno::INPROGRESS) => false,
            Err(err) => {
                tracing::debug!(%err, target = %target.target, "proxy: upstream refused");
                continue; // dropping the client closes it: the connection is refused
            }
        };
        let (Ok(up), Ok(down)) = (Direction::new(), Direction::new()) else {
            continue;
        };
        let conn = TcpConn {
            client,
            upstream,
            connected,
            up,
            down,
        };
        match conns.iter().position(Option::is_none) {
            Some(free) => conns[free] = Some(conn),
            None => conns.push(Some(conn)),
        }
    }
}

/// Finish a pending connect, then move bytes both ways.
fn advance(c: &mut TcpConn) -> io::Result<()> {
    if !c.connected {
        match rustix::net::sockopt::socket_error(&c.upstream)? {
            Ok(()) => c.connected = true,
            Err(rustix::io::Errno::INPROGRESS) => return Ok(()),
            Err(e) => return Err(e.into()),
        }
    }
    c.up.pump(c.client.as_fd(), c.upstream.as_fd())?;
    c.down.pump(c.upstream.as_fd(), c.client.as_fd())
}

fn forward_datagram(
    index: usize,
    target: &ProxyTarget,
    flows: &mut Vec<Option<UdpFlow>>,
    flow_of: &mut HashMap<(usize, SocketAddr), usize>,
) {
    let mut buf = vec![0u8; 65536];
    loop {
        let (n, from) =
            match rustix::net::recvfrom(&target.socket, &mut buf[..], RecvFlags::DONTWAIT) {
                Ok((_, n, Some(from))) => match SocketAddr::try_from(from) {
                    Ok(addr) => (n, addr),
                    Err(_) => continue,
                },
                Ok(_) => continue,
                Err(_) => return,
            };
        let slot = match flow_of.get(&(index, from)) {
            Some(&slot) => slot,
            None => {
                let Ok(upstream) = rustix::net::socket_with(
                    family_of(&target.target),
                    SocketType::DGRAM,
                    SocketFlags::NONBLOCK | SocketFlags::CLOEXEC,
                    None,
                ) else {
                    continue;
                };
                if rustix::net::connect(&upstream, &target.target).is_err() {
                    continue;
                }
                let flow = UdpFlow {
                    listener: index,
                    client: from,
                    upstream,
                    last: Instant::now(),
                };
                let slot = match flows.iter().position(Option::is_none) {
                    Some(free) => {
                        flows[free] = Some(flow);
                        free
                    }
                    None => {
                        flows.push(Some(flow));
                        flows.len() - 1
                    }
                };
                flow_of.insert((index, from), slot);
                slot
            }
        };
        if let Some(flow) = flows[slot].as_mut() {
            flow.last = Instant::now();
            let _ = rustix::net::send(&flow.upstream, &buf[..n], SendFlags::DONTWAIT);
        }
    }
}

fn reply_datagram(flow: &mut UdpFlow, target: &ProxyTarget) {
    let mut buf = vec![0u8; 65536];
    while let Ok((_, n)) = rustix::net::recv(&flow.upstream, &mut buf[..], RecvFlags::DONTWAIT) {
        flow.last = Instant::now();
        let _ = rustix::net::sendto(&target.socket, &buf[..n], SendFlags::DONTWAIT, &flow.client);
    }
}

fn expire_flows(flows: &mut [Option<UdpFlow>], flow_of: &mut HashMap<(usize, SocketAddr), usize>) {
    for slot in flows.iter_mut() {
        if slot.as_ref().is_some_and(|f| f.last.elapsed() > UDP_IDLE) {
            let f = slot.take().expect("checked");
            flow_of.remove(&(f.listener, f.client));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::network::ports::{reserve, Forwarding, PortSpec};
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream, UdpSocket};

    fn listener_spec(protocol: Protocol) -> PortSpec {
        PortSpec {
            host_ip: Some("127.0.0.1".parse().unwrap()),
            host_port_start: 0,
            host_port_end: 0,
            container_port: 1,
            protocol,
        }
    }

    /// Run the proxy loop in a thread until the returned pipe end is dropped... or written.
    fn run_proxy(targets: Vec<ProxyTarget>) -> (OwnedFd, std::thread::JoinHandle<()>) {
        let (stop_r, stop_w) = rustix::pipe::pipe().unwrap();
        let handle = std::thread::spawn(move || {
            serve(targets, Some(stop_r.as_fd())).unwrap();
        });
        (stop_w, handle)
    }

    #[test]
    fn tcp_is_relayed_both_ways_with_half_close() {
        // The "container": an echo server that answers after reading to EOF.
        let backend = TcpListener::bind("127.0.0.1:0").unwrap();
        let backend_addr = backend.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (mut s, _) = backend.accept().unwrap();
            let mut all = Vec::new();
            s.read_to_end(&mut all).unwrap();
            s.write_all(&all).unwrap();
        });
        let reserved = reserve(&listener_spec(Protocol::Tcp), Forwarding::Proxy, true).unwrap();
        let port = reserved.port.host_port;
        let (stop, proxy) = run_proxy(vec![ProxyTarget {
            socket: reserved.socket,
            protocol: Protocol::Tcp,
            target: backend_addr,
        }]);
        let mut client = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let payload: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let writer = {
            let mut c = client.try_clone().unwrap();
            let payload = payload.clone();
            std::thread::spawn(move || {
                c.write_all(&payload).unwrap();
                c.shutdown(std::net::Shutdown::Write).unwrap();
            })
        };
        let mut echoed = Vec::new();
        client.read_to_end(&mut echoed).unwrap();
        writer.join().unwrap();
        server.join().unwrap();
        assert_eq!(echoed.len(), payload.len());
        assert!(echoed == payload, "the bytes came back unchanged");
        rustix::io::write(&stop, b"x").unwrap();
        proxy.join().unwrap();
    }

    #[test]
    fn udp_replies_go_back_to_the_right_client() {
        let backend = UdpSocket::bind("127.0.0.1:0").unwrap();
        let backend_addr = backend.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let mut buf = [0u8; 64];
            for _ in 0..2 {
                let (n, from) = backend.recv_from(&mut buf).unwrap();
                let mut answer = b"re:".to_vec();
                answer.extend_from_slice(&buf[..n]);
                backend.send_to(&answer, from).unwrap();
            }
        });
        let reserved = reserve(&listener_spec(Protocol::Udp), Forwarding::Proxy, true).unwrap();
        let port = reserved.port.host_port;
        let (stop, proxy) = run_proxy(vec![ProxyTarget {
            socket: reserved.socket,
            protocol: Protocol::Udp,
            target: backend_addr,
        }]);
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").unwrap();
        for s in [&a, &b] {
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        }
        a.send_to(b"a", ("127.0.0.1", port)).unwrap();
        b.send_to(b"b", ("127.0.0.1", port)).unwrap();
        let mut buf = [0u8; 64];
        let n = a.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"re:a");
        let n = b.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"re:b");
        server.join().unwrap();
        rustix::io::write(&stop, b"x").unwrap();
        proxy.join().unwrap();
    }

    #[test]
    fn a_refused_upstream_closes_the_client() {
        // A port nothing listens on (bound, not listening: connect is refused).
        let dead = TcpListener::bind("127.0.0.1:0").unwrap();
        let dead_addr = dead.local_addr().unwrap();
        drop(dead);
        let reserved = reserve(&listener_spec(Protocol::Tcp), Forwarding::Proxy, true).unwrap();
        let port = reserved.port.host_port;
        let (stop, proxy) = run_proxy(vec![ProxyTarget {
            socket: reserved.socket,
            protocol: Protocol::Tcp,
            target: dead_addr,
        }]);
        let mut client = TcpStream::connect(("127.0.0.1", port)).unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut buf = [0u8; 8];
        let n = client.read(&mut buf).unwrap_or(0);
        assert_eq!(n, 0, "the client sees the connection end");
        rustix::io::write(&stop, b"x").unwrap();
        proxy.join().unwrap();
    }
}
