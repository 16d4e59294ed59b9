//! The guided tour (docs/tour/*.md) run as written (issue 8): every command
//! block of every chapter runs, and its output must still look the way the
//! text says.
//!
//! The format, chosen so the chapters stay plain readable markdown:
//!
//! ````text
//! ```sh tour
//! berth run --rm busybox echo hello
//! ```
//! ```text
//! hello
//! ```
//! ````
//!
//! - A block fenced ```` ```sh tour ```` is run; the ```` ```text ```` block
//!   right after it is what its stdout and stderr (merged) must look like.
//!   Without one, the block must print nothing.
//! - In the expected text, `<word>` (lowercase: `<id>`, `<pid>`, `<ip>`)
//!   stands for any one word (no spaces), `...` inside a line for any text,
//!   and a line of only `...` for any number of lines. Runs of spaces
//!   count as one (table columns may widen).
//! - Tags after `tour`: `fails` (the last command must fail), `cgroup-v1` /
//!   `cgroup-v2` (run only where the memory controller is on that version;
//!   the chapter on cgroups shows both).
//!
//! Each chapter runs in one bash session (variables carry over from block to
//! block, as in the reader's terminal) in an isolated berth root with the
//! busybox image loaded, its own bridge and subnet, `berth` first on PATH,
//! and a scratch directory as working directory. `/var/cache/berth-fixtures`
//! in a command becomes `$BERTH_FIXTURES` when that is set. The blocks'
//! stdin is /dev/null. Every container is removed and every process the
//! session left behind is killed (by pid) when the chapter ends.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::Duration;

use berth_tests::{bin_dir, fixture, fixtures_dir, require_root, TestRoot};

/// How long one block may run.
const BLOCK_TIMEOUT: Duration = Duration::from_secs(180);

fn tour_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/tour")
}

/// One command block and what it must print.
#[derive(Debug)]
struct Block {
    /// Line of the ```sh tour fence in the chapter.
    line: usize,
    script: String,
    expected: Vec<String>,
    fails: bool,
    only_on: Option<CgroupVersion>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CgroupVersion {
    V1,
    V2,
}

/// The blocks of a chapter, in order.
fn parse(markdown: &str) -> Vec<Block> {
    let lines: Vec<&str> = markdown.lines().collect();
    let mut blocks = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let Some(tags) = lines[i].trim().strip_prefix("```sh tour") else {
            i += 1;
            continue;
        };
        let tags: Vec<&str> = tags.split_whitespace().collect();
        let start = i;
        let (script, next) = fenced_body(&lines, i + 1);
        let mut j = next;
        while j < lines.len() && lines[j].trim().is_empty() {
            j += 1;
        }
        let mut expected = Vec::new();
        if j < lines.len() && lines[j].trim() == "```text" {
            let (body, after) = fenced_body(&lines, j + 1);
            expected = body;
            j = after;
        } else {
            j = next;
        }
        blocks.push(Block {
            line: start + 1,
            script: script.join("\n"),
            expected,
            fails: tags.contains(&"fails"),
            only_on: if tags.contains(&"cgroup-v1") {
                Some(CgroupVersion::V1)
            } else if tags.contains(&"cgroup-v2") {
                Some(CgroupVersion::V2)
            } else {
                None
            },
        });
        i = j;
    }
    blocks
}

/// The lines of a fenced block starting at `from`, and the index after its
/// closing fence.
fn fenced_body(lines: &[&str], from: usize) -> (Vec<String>, usize) {
    let mut body = Vec::new();
    let mut i = from;
    while i < lines.len() && lines[i].trim() != "```" {
        body.push(lines[i].to_string());
        i += 1;
    }
    (body, i + 1)
}

/// Where this host keeps the memory controller.
fn memory_cgroup_version() -> CgroupVersion {
    let v1 = Path::new("/sys/fs/cgroup/memory/memory.limit_in_bytes").exists()
        || Path::new("/sys/fs/cgroup/memory/memory.usage_in_bytes").exists();
    if v1 {
        CgroupVersion::V1
    } else {
        CgroupVersion::V2
    }
}

// ---- matching -------------------------------------------------------------

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Text(char),
    Word,
    Anything,
}

/// An expected line as tokens (spaces already collapsed).
fn tokens(pattern: &str) -> Vec<Token> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        if chars[i..].starts_with(&['.', '.', '.']) {
            out.push(Token::Anything);
            i += 3;
            continue;
        }
        if chars[i] == '<' {
            if let Some(len) = chars[i + 1..].iter().position(|c| *c == '>') {
                let name = &chars[i + 1..i + 1 + len];
                let is_placeholder = !name.is_empty()
                    && name.iter().all(|c| {
                        c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_' || *c == '-'
                    });
                if is_placeholder {
                    out.push(Token::Word);
                    i += len + 2;
                    continue;
                }
            }
        }
        out.push(Token::Text(chars[i]));
        i += 1;
    }
    out
}

fn line_matches(pattern: &[Token], text: &[char]) -> bool {
    match pattern.first() {
        None => text.is_empty(),
        Some(Token::Text(c)) => text.first() == Some(c) && line_matches(&pattern[1..], &text[1..]),
        Some(Token::Word) => {
            let word = text.iter().take_while(|c| !c.is_whitespace()).count();
            (1..=word).any(|n| line_matches(&pattern[1..], &text[n..]))
        }
        Some(Token::Anything) => (0..=text.len()).any(|n| line_matches(&pattern[1..], &text[n..])),
    }
}

fn normalize(line: &str) -> String {
    line.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Whether `actual` looks like `expected` (see the module docs).
fn output_matches(expected: &[String], actual: &[String]) -> bool {
    match expected.first() {
        None => actual.is_empty(),
        Some(e) if e.trim() == "..." => {
            (0..=actual.len()).any(|n| output_matches(&expected[1..], &actual[n..]))
        }
        Some(e) => {
            let Some(a) = actual.first() else {
                return false;
            };
            let text: Vec<char> = normalize(a).chars().collect();
            line_matches(&tokens(&normalize(e)), &text)
                && output_matches(&expected[1..], &actual[1..])
        }
    }
}

/// Remove terminal colour sequences.
fn strip_ansi(text: &str) -> String {
    let mut out = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
            continue;
        }
        out.push(c);
    }
    out
}

// ---- running --------------------------------------------------------------

/// One bash session in an isolated root.
struct Session {
    root: TestRoot,
    shell: Child,
    stdin: ChildStdin,
    lines: Receiver<String>,
    next_marker: u32,
}

impl Session {
    fn start() -> Session {
        let root = TestRoot::new();
        root.ok([
            "load",
            "-i",
            fixture("busybox/docker-archive.tar").to_str().unwrap(),
        ]);
        let work = root.path().join("work");
        std::fs::create_dir_all(&work).unwrap();
        let path = format!(
            "{}:{}",
            bin_dir().display(),
            std::env::var("PATH").unwrap_or_else(|_| "/usr/sbin:/usr/bin:/sbin:/bin".into())
        );
        // `root.berth` carries BERTH_ROOT, BERTH_STATE and the network settings.
        let template = root.berth(Vec::<String>::new());
        let mut cmd = Command::new("bash");
        cmd.args(["--noprofile", "--norc"])
            .current_dir(&work)
            .env("PATH", path)
            .env("LC_ALL", "C")
            .env_remove("RUST_LOG")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        for (key, value) in template.get_envs() {
            if let Some(value) = value {
                cmd.env(key, value);
            }
        }
        let mut shell = cmd.spawn().expect("spawn bash");
        let stdin = shell.stdin.take().unwrap();
        let stdout = shell.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Session {
            root,
            shell,
            stdin,
            lines: rx,
            next_marker: 0,
        }
    }

    /// Run `script`; its merged output lines and exit status.
    fn run(&mut self, script: &str) -> (Vec<String>, i32) {
        self.next_marker += 1;
        let marker = format!("__berth_tour_block_{}_done", self.next_marker);
        let text = format!("{{\n{script}\n}} </dev/null 2>&1; echo \"{marker} $?\"\n");
        self.stdin
            .write_all(text.as_bytes())
            .expect("write to bash");
        self.stdin.flush().unwrap();
        let mut output = Vec::new();
        loop {
            let line = self
                .lines
                .recv_timeout(BLOCK_TIMEOUT)
                .unwrap_or_else(|_| panic!("the block did not finish within {BLOCK_TIMEOUT:?}:\n{script}\noutput so far:\n{}", output.join("\n")));
            if let Some(status) = line.strip_prefix(&format!("{marker} ")) {
                return (output, status.trim().parse().unwrap_or(-1));
            }
            output.push(strip_ansi(&line));
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        // Containers first (their monitors are not in our process group).
        let out = self.root.run(["ps", "-aq", "--no-trunc"]);
        for id in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            let _ = self.root.run(["rm", "-f", id]);
        }
        // Then whatever the session started in the background, by pid.
        let shell = self.shell.id() as i32;
        for pid in descendants_of(shell) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let _ = self.shell.kill();
        let _ = self.shell.wait();
    }
}

/// Every process whose chain of parents leads to `ancestor`.
fn descendants_of(ancestor: i32) -> Vec<i32> {
    let parent_of = |pid: i32| -> Option<i32> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        stat[stat.rfind(')')? + 2..]
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()
    };
    let pids: Vec<i32> = std::fs::read_dir("/proc")
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    pids.into_iter()
        .filter(|&pid| {
            let mut p = pid;
            for _ in 0..64 {
                match parent_of(p) {
                    Some(parent) if parent == ancestor => return true,
                    Some(parent) if parent > 1 => p = parent,
                    _ => return false,
                }
            }
            false
        })
        .collect()
}

/// Run every block of `chapter` (a file of docs/tour) and check its output.
fn run_chapter(chapter: &str) {
    require_root();
    let path = tour_dir().join(chapter);
    let markdown =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let blocks = parse(&markdown);
    assert!(!blocks.is_empty(), "{chapter} has no ```sh tour block");
    let fixtures = fixtures_dir();
    let host = memory_cgroup_version();
    let mut session = Session::start();
    let mut failures = Vec::new();
    for block in &blocks {
        if block.only_on.is_some_and(|v| v != host) {
            continue;
        }
        let script = block
            .script
            .replace("/var/cache/berth-fixtures", &fixtures.display().to_string());
        let (output, status) = session.run(&script);
        let status_ok = if block.fails {
            status != 0
        } else {
            status == 0
        };
        if !status_ok || !output_matches(&block.expected, &output) {
            failures.push(format!(
                "{chapter}:{}: ```sh tour{}\n{}\n--- expected{}:\n{}\n--- got (exit status {status}):\n{}\n",
                block.line,
                if block.fails { " fails" } else { "" },
                block.script,
                if block.fails { " (and a failure)" } else { "" },
                block.expected.join("\n"),
                output.join("\n")
            ));
            // Later blocks build on this one: stop at the first difference.
            break;
        }
    }
    assert!(
        failures.is_empty(),
        "the tour no longer matches berth:\n{}",
        failures.join("\n")
    );
}

/// Every chapter file, so that a new one cannot be left out of the tests.
const CHAPTERS: [&str; 10] = [
    "README.md",
    "01-images-and-layers.md",
    "02-namespaces.md",
    "03-pivot-root-and-mounts.md",
    "04-cgroups.md",
    "05-capabilities-and-seccomp.md",
    "06-networking.md",
    "07-pid1-and-stop.md",
    "08-build-and-layer-diffs.md",
    "09-registries.md",
];

#[test]
fn every_chapter_is_tested() {
    let mut files: Vec<String> = std::fs::read_dir(tour_dir())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".md"))
        .collect();
    files.sort();
    let mut listed: Vec<String> = CHAPTERS.iter().map(|s| s.to_string()).collect();
    listed.sort();
    assert_eq!(
        files, listed,
        "docs/tour and the tests' CHAPTERS list differ"
    );
}

#[test]
fn tour_readme() {
    run_chapter("README.md");
}

#[test]
fn tour_01_images_and_layers() {
    run_chapter("01-images-and-layers.md");
}

#[test]
fn tour_02_namespaces() {
    run_chapter("02-namespaces.md");
}

#[test]
fn tour_03_pivot_root_and_mounts() {
    run_chapter("03-pivot-root-and-mounts.md");
}

#[test]
fn tour_04_cgroups() {
    run_chapter("04-cgroups.md");
}

#[test]
fn tour_05_capabilities_and_seccomp() {
    run_chapter("05-capabilities-and-seccomp.md");
}

#[test]
fn tour_06_networking() {
    run_chapter("06-networking.md");
}

#[test]
fn tour_07_pid1_and_stop() {
    run_chapter("07-pid1-and-stop.md");
}

#[test]
fn tour_08_build_and_layer_diffs() {
    run_chapter("08-build-and-layer-diffs.md");
}

#[test]
fn tour_09_registries() {
    run_chapter("09-registries.md");
}

// ---- the format itself ----------------------------------------------------

#[test]
fn expected_output_placeholders_and_ellipses_match_as_documented() {
    let lines = |s: &str| s.lines().map(String::from).collect::<Vec<_>>();
    assert!(output_matches(&lines("hello"), &lines("hello")));
    assert!(!output_matches(&lines("hello"), &lines("hello\nworld")));
    assert!(output_matches(&lines("<id>"), &lines("f99efeb04735")));
    assert!(!output_matches(&lines("<id>"), &lines("two words")));
    assert!(output_matches(
        &lines("CONTAINER ID IMAGE\n<id> busybox"),
        &lines("CONTAINER ID   IMAGE\nf99efeb04735   busybox")
    ));
    assert!(output_matches(&lines("a\n...\nz"), &lines("a\nb\nc\nz")));
    assert!(output_matches(&lines("a\n...\nz"), &lines("a\nz")));
    assert!(!output_matches(&lines("a\n...\nz"), &lines("a\nb")));
    assert!(output_matches(
        &lines("pid ... on the host"),
        &lines("pid 42 of 7 on the host")
    ));
    assert!(output_matches(
        &lines("<BROADCAST,UP>"),
        &lines("<BROADCAST,UP>")
    ));
    assert!(!output_matches(&lines("<BROADCAST,UP>"), &lines("<UP>")));
    assert!(output_matches(&[], &[]));
    assert!(!output_matches(&[], &lines("unexpected")));
}

#[test]
fn blocks_are_parsed_with_their_expected_output_and_tags() {
    let md = "text\n\n```sh tour\necho a\necho b\n```\n\n```text\na\nb\n```\n\n```sh tour fails cgroup-v2\nfalse\n```\n\n```sh\nnot run\n```\n";
    let blocks = parse(md);
    assert_eq!(blocks.len(), 2, "{blocks:?}");
    assert_eq!(blocks[0].script, "echo a\necho b");
    assert_eq!(blocks[0].expected, vec!["a", "b"]);
    assert!(!blocks[0].fails);
    assert!(blocks[1].fails);
    assert_eq!(blocks[1].only_on, Some(CgroupVersion::V2));
    assert!(blocks[1].expected.is_empty());
}
