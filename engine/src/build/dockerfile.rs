//! The Dockerfile parser: text to a list of typed instructions, grouped into
//! build stages.
//!
//! Mechanism: pure string processing, in the order of moby's buildkit
//! parser (`frontend/dockerfile/parser`):
//! 1. parser directives: `# escape=`` ` (and `# syntax=`, `# check=`, kept
//!    but unused) on the first lines, before any instruction, comment or
//!    blank line;
//! 2. logical lines: a line ending in the escape character continues on the
//!    next one; comment lines (`#` after optional blanks) and blank lines are
//!    dropped, also in the middle of a continuation;
//! 3. each logical line is `KEYWORD [--flag=value ...] arguments`, the
//!    keyword case-insensitive;
//! 4. arguments in the form each instruction takes: JSON ("exec form") or a
//!    plain string ("shell form") for RUN/CMD/ENTRYPOINT; JSON or words for
//!    COPY/ADD/VOLUME; `key=value` pairs for ENV/LABEL (with the legacy
//!    `ENV key value`); and so on.
//!
//! Variables are *not* substituted here (that needs the build's state, see
//! [`super::shell`]): words keep their quotes. Heredocs are not supported.
//! The parser never panics: any input gives instructions or a [`ParseError`]
//! naming the line.

use std::fmt;

/// A parse error, with the line where the instruction starts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("dockerfile parse error on line {line}: {message}")]
pub struct ParseError {
    pub line: usize,
    pub message: String,
}

fn error(line: usize, message: impl Into<String>) -> ParseError {
    ParseError {
        line,
        message: message.into(),
    }
}

/// Biggest Dockerfile accepted (docker has no limit; this only stops absurd input).
pub const MAX_DOCKERFILE_BYTES: usize = 16 << 20;

/// A command in exec form (`["a", "b"]`) or shell form (`a b`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandForm {
    Exec(Vec<String>),
    Shell(String),
}

impl CommandForm {
    /// How docker prints it in history: JSON for exec form, else the text.
    pub fn display(&self) -> String {
        match self {
            CommandForm::Exec(args) => serde_json::to_string(args).unwrap_or_default(),
            CommandForm::Shell(text) => text.clone(),
        }
    }
}

/// The arguments of COPY and ADD.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CopySpec {
    /// Source words, unexpanded (globs allowed).
    pub sources: Vec<String>,
    pub dest: String,
    /// `--from=stage|image`.
    pub from: Option<String>,
    /// `--chown=user[:group]`.
    pub chown: Option<String>,
    /// `--chmod=0755` (octal).
    pub chmod: Option<String>,
    /// Written in JSON form (words then are literal: no quote removal).
    pub json: bool,
}

/// HEALTHCHECK, as recorded in the image config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Healthcheck {
    /// `HEALTHCHECK NONE`: disable the base image's check.
    None,
    Check {
        command: CommandForm,
        interval: Option<String>,
        timeout: Option<String>,
        start_period: Option<String>,
        start_interval: Option<String>,
        retries: Option<String>,
    },
}

/// One instruction with its arguments in their parsed (unexpanded) form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Instruction {
    From {
        image: String,
        name: Option<String>,
        platform: Option<String>,
    },
    Run(CommandForm),
    Cmd(CommandForm),
    Entrypoint(CommandForm),
    /// `key=value` pairs (words with their quotes).
    Env(Vec<(String, String)>),
    Label(Vec<(String, String)>),
    /// `name[=default]`, possibly several.
    Arg(Vec<(String, Option<String>)>),
    Copy(CopySpec),
    Add(CopySpec),
    Workdir(String),
    User(String),
    Expose(Vec<String>),
    Volume(Vec<String>),
    StopSignal(String),
    Maintainer(String),
    Healthcheck(Healthcheck),
    /// The trigger instruction's text, checked to parse.
    Onbuild(String),
    Shell(Vec<String>),
}

impl Instruction {
    pub fn keyword(&self) -> &'static str {
        match self {
            Instruction::From { .. } => "FROM",
            Instruction::Run(_) => "RUN",
            Instruction::Cmd(_) => "CMD",
            Instruction::Entrypoint(_) => "ENTRYPOINT",
            Instruction::Env(_) => "ENV",
            Instruction::Label(_) => "LABEL",
            Instruction::Arg(_) => "ARG",
            Instruction::Copy(_) => "COPY",
            Instruction::Add(_) => "ADD",
            Instruction::Workdir(_) => "WORKDIR",
            Instruction::User(_) => "USER",
            Instruction::Expose(_) => "EXPOSE",
            Instruction::Volume(_) => "VOLUME",
            Instruction::StopSignal(_) => "STOPSIGNAL",
            Instruction::Maintainer(_) => "MAINTAINER",
            Instruction::Healthcheck(_) => "HEALTHCHECK",
            Instruction::Onbuild(_) => "ONBUILD",
            Instruction::Shell(_) => "SHELL",
        }
    }
}

/// An instruction and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// 1-based line of the instruction's first line.
    pub line: usize,
    /// The logical line as written (continuations joined), for `Step N/M : ...`.
    pub text: String,
    pub instruction: Instruction,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// One `FROM ...` and the instructions up to the next `FROM`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stage {
    pub from: Step,
    pub steps: Vec<Step>,
}

impl Stage {
    /// The `AS name` of the stage, lowercase.
    pub fn name(&self) -> Option<&str> {
        match &self.from.instruction {
            Instruction::From { name, .. } => name.as_deref(),
            _ => None,
        }
    }
}

/// A whole Dockerfile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dockerfile {
    /// The escape character (`\` unless `# escape=``).
    pub escape: char,
    /// `ARG`s before the first `FROM` (usable in `FROM` lines only).
    pub global_args: Vec<Step>,
    pub stages: Vec<Stage>,
}

impl Dockerfile {
    /// Every instruction counted by docker's `Step N/M`.
    pub fn step_count(&self) -> usize {
        self.global_args.len() + self.stages.iter().map(|s| 1 + s.steps.len()).sum::<usize>()
    }

    /// The index of the stage named `name` (case-insensitive) or numbered `name`.
    pub fn stage_index(&self, name: &str) -> Option<usize> {
        let lower = name.to_ascii_lowercase();
        self.stages
            .iter()
            .position(|s| s.name() == Some(lower.as_str()))
            .or_else(|| {
                name.parse::<usize>()
                    .ok()
                    .filter(|&i| i < self.stages.len())
            })
    }
}

/// A logical line before its arguments are parsed.
struct LogicalLine {
    line: usize,
    text: String,
}

/// Parse a Dockerfile.
pub fn parse(source: &str) -> Result<Dockerfile, ParseError> {
    if source.len() > MAX_DOCKERFILE_BYTES {
        return Err(error(
            1,
            format!(
                "the Dockerfile is larger than {} MiB",
                MAX_DOCKERFILE_BYTES >> 20
            ),
        ));
    }
    let source = source.strip_prefix('\u{feff}').unwrap_or(source);
    let lines: Vec<&str> = source.lines().collect();
    let (escape, first_line) = directives(&lines)?;
    let logical = logical_lines(&lines, first_line, escape)?;
    let mut global_args = Vec::new();
    let mut stages: Vec<Stage> = Vec::new();
    for line in logical {
        let step = parse_line(&line, escape)?;
        match (&step.instruction, stages.last_mut()) {
            (Instruction::From { .. }, _) => stages.push(Stage {
                from: step,
                steps: Vec::new(),
            }),
            (_, Some(stage)) => stage.steps.push(step),
            (Instruction::Arg(_), None) => global_args.push(step),
            (other, None) => {
                return Err(error(
                    step.line,
                    format!("{} before the first FROM: a Dockerfile must start with FROM (only ARG may come before it)", other.keyword()),
                ))
            }
        }
    }
    if stages.is_empty() {
        return Err(error(
            lines.len().max(1),
            "the Dockerfile has no FROM instruction",
        ));
    }
    let mut names: Vec<(&str, usize)> = Vec::new();
    for stage in &stages {
        if let Some(name) = stage.name() {
            if let Some((_, line)) = names.iter().find(|(n, _)| *n == name) {
                return Err(error(
                    stage.from.line,
                    format!("duplicate stage name {name:?} (first used on line {line})"),
                ));
            }
            names.push((name, stage.from.line));
        }
    }
    Ok(Dockerfile {
        escape,
        global_args,
        stages,
    })
}

/// Parser directives: `# name=value` lines at the very top. Returns the
/// escape character and the index of the first line after them.
fn directives(lines: &[&str]) -> Result<(char, usize), ParseError> {
    let mut escape = '\\';
    let mut seen: Vec<String> = Vec::new();
    for (i, raw) in lines.iter().enumerate() {
        let Some((name, value)) = directive(raw) else {
            return Ok((escape, i));
        };
        if seen.contains(&name) {
            return Err(error(
                i + 1,
                format!("only one {name} parser directive can be used"),
            ));
        }
        if name == "escape" {
            escape = match value.as_str() {
                "\\" => '\\',
                "`" => '`',
                other => {
                    return Err(error(
                        i + 1,
                        format!("invalid escape token {other:?} does not match ` or \\"),
                    ))
                }
            };
        }
        seen.push(name);
    }
    Ok((escape, lines.len()))
}

/// `# name = value` with a known directive name, lowercased.
fn directive(raw: &str) -> Option<(String, String)> {
    let rest = raw.trim_start().strip_prefix('#')?;
    let (name, value) = rest.split_once('=')?;
    let name = name.trim().to_ascii_lowercase();
    if !matches!(name.as_str(), "escape" | "syntax" | "check") {
        return None;
    }
    let value = value.trim();
    if value.is_empty() || value.contains(char::is_whitespace) {
        return None;
    }
    Some((name, value.to_string()))
}

fn is_comment(raw: &str) -> bool {
    raw.trim_start().starts_with('#')
}

/// The text of a line without the continuation character, and whether it
/// continues on the next line.
fn strip_continuation(raw: &str, escape: char) -> (&str, bool) {
    let trimmed = raw.trim_end_matches([' ', '\t', '\r']);
    match trimmed.strip_suffix(escape) {
        Some(body) => (body, true),
        None => (raw.trim_end_matches('\r'), false),
    }
}

fn logical_lines(
    lines: &[&str],
    first: usize,
    escape: char,
) -> Result<Vec<LogicalLine>, ParseError> {
    let mut out = Vec::new();
    let mut i = first;
    while i < lines.len() {
        let raw = lines[i];
        i += 1;
        if is_comment(raw) || raw.trim().is_empty() {
            continue;
        }
        let start = i;
        let (body, mut continues) = strip_continuation(raw.trim_start(), escape);
        let mut text = body.to_string();
        while continues && i < lines.len() {
            let next = lines[i];
            i += 1;
            if is_comment(next) || next.trim().is_empty() {
                continue;
            }
            let (body, more) = strip_continuation(next, escape);
            text.push_str(body);
            continues = more;
        }
        let text = text.trim().to_string();
        if !text.is_empty() {
            out.push(LogicalLine { line: start, text });
        }
    }
    Ok(out)
}

/// `--name=value` flags at the start of the arguments.
struct Flags {
    line: usize,
    keyword: &'static str,
    flags: Vec<(String, Option<String>)>,
}

impl Flags {
    /// Split leading `--flags` off `args`; a bare `--` ends them.
    fn extract(line: usize, keyword: &'static str, args: &str) -> (Flags, String) {
        let mut flags = Vec::new();
        let mut rest = args.trim_start();
        while let Some(after) = rest.strip_prefix("--") {
            let end = after.find(char::is_whitespace).unwrap_or(after.len());
            let word = &after[..end];
            rest = after[end..].trim_start();
            if word.is_empty() {
                break;
            }
            match word.split_once('=') {
                Some((name, value)) => {
                    flags.push((name.to_ascii_lowercase(), Some(value.to_string())))
                }
                None => flags.push((word.to_ascii_lowercase(), None)),
            }
        }
        (
            Flags {
                line,
                keyword,
                flags,
            },
            rest.to_string(),
        )
    }

    /// Take the value of `--name=value`; refuses `--name` without a value.
    fn take(&mut self, name: &str) -> Result<Option<String>, ParseError> {
        let Some(i) = self.flags.iter().position(|(n, _)| n == name) else {
            return Ok(None);
        };
        let (_, value) = self.flags.remove(i);
        if self.flags.iter().any(|(n, _)| n == name) {
            return Err(error(
                self.line,
                format!("duplicate flag specified: --{name}"),
            ));
        }
        match value {
            Some(v) => Ok(Some(v)),
            None => Err(error(
                self.line,
                format!("missing a value on flag: --{name}"),
            )),
        }
    }

    /// Every flag not taken is an error.
    fn finish(self) -> Result<(), ParseError> {
        match self.flags.first() {
            None => Ok(()),
            Some((name, _)) => Err(error(
                self.line,
                format!(
                    "unknown flag: --{name} (not supported by {} in berth)",
                    self.keyword
                ),
            )),
        }
    }
}

const KEYWORDS: &[&str] = &[
    "FROM",
    "RUN",
    "CMD",
    "ENTRYPOINT",
    "ENV",
    "LABEL",
    "ARG",
    "COPY",
    "ADD",
    "WORKDIR",
    "USER",
    "EXPOSE",
    "VOLUME",
    "STOPSIGNAL",
    "MAINTAINER",
    "HEALTHCHECK",
    "ONBUILD",
    "SHELL",
];

fn parse_line(line: &LogicalLine, escape: char) -> Result<Step, ParseError> {
    let instruction = parse_instruction(line.line, &line.text, escape, 0)?;
    Ok(Step {
        line: line.line,
        text: line.text.clone(),
        instruction,
    })
}

fn parse_instruction(
    line: usize,
    text: &str,
    escape: char,
    depth: usize,
) -> Result<Instruction, ParseError> {
    let text = text.trim();
    let (word, args) = match text.find(char::is_whitespace) {
        Some(i) => (&text[..i], text[i..].trim_start()),
        None => (text, ""),
    };
    let upper = word.to_ascii_uppercase();
    let Some(keyword) = KEYWORDS.iter().copied().find(|k| *k == upper) else {
        return Err(error(
            line,
            format!("unknown instruction: {}", word.to_ascii_uppercase()),
        ));
    };
    let (mut flags, args) = Flags::extract(line, keyword, args);
    let args = args.as_str();
    let need_args = |what: &str| -> Result<(), ParseError> {
        if args.trim().is_empty() {
            Err(error(line, format!("{keyword} requires {what}")))
        } else {
            Ok(())
        }
    };
    let instruction = match keyword {
        "FROM" => {
            need_args("at least one argument (the image)")?;
            let platform = flags.take("platform")?;
            let words: Vec<&str> = args.split_whitespace().collect();
            let (image, name) = match words.as_slice() {
                [image] => (*image, None),
                [image, as_word, name] if as_word.eq_ignore_ascii_case("as") => {
                    if !valid_stage_name(name) {
                        return Err(error(
                            line,
                            format!("invalid name for build stage: {name:?}, name can't start with a number or contain symbols"),
                        ));
                    }
                    (*image, Some(name.to_ascii_lowercase()))
                }
                _ => return Err(error(line, "FROM requires either one or three arguments: FROM image [AS name]")),
            };
            Instruction::From {
                image: image.to_string(),
                name,
                platform,
            }
        }
        "RUN" => {
            if let Some(mount) = flags.take("mount")? {
                return Err(error(line, format!("RUN --mount={mount} needs BuildKit, which berth's builder does not implement")));
            }
            flags.take("network")?;
            need_args("at least one argument")?;
            Instruction::Run(command_form(args))
        }
        "CMD" => Instruction::Cmd(command_form(args)),
        "ENTRYPOINT" => Instruction::Entrypoint(command_form(args)),
        "ENV" => {
            need_args("at least one argument")?;
            Instruction::Env(name_values(line, "ENV", args, escape, true)?)
        }
        "LABEL" => {
            need_args("at least one argument")?;
            Instruction::Label(name_values(line, "LABEL", args, escape, false)?)
        }
        "ARG" => {
            need_args("at least one argument")?;
            let mut declared = Vec::new();
            for word in split_words(args, escape) {
                let (name, default) = match word.split_once('=') {
                    Some((name, value)) => (name.to_string(), Some(value.to_string())),
                    None => (word.clone(), None),
                };
                if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                    return Err(error(line, format!("invalid ARG name {name:?}")));
                }
                declared.push((name, default));
            }
            Instruction::Arg(declared)
        }
        "COPY" | "ADD" => {
            let mut spec = CopySpec {
                chown: flags.take("chown")?,
                chmod: flags.take("chmod")?,
                ..CopySpec::default()
            };
            if keyword == "COPY" {
                spec.from = flags.take("from")?;
            } else if flags.take("checksum")?.is_some() {
                return Err(error(line, "ADD --checksum is not supported by berth"));
            }
            if let Some(chmod) = &spec.chmod {
                if u32::from_str_radix(chmod, 8).map_or(true, |m| m > 0o7777) {
                    return Err(error(line, format!("invalid --chmod={chmod}: use an octal mode such as 0755")));
                }
            }
            let (mut words, json) = json_or_words(args);
            if words.len() < 2 {
                return Err(error(line, format!("{keyword} requires at least two arguments, but only {} provided", words.len())));
            }
            spec.dest = words.pop().unwrap_or_default();
            spec.sources = words;
            spec.json = json;
            if keyword == "COPY" {
                Instruction::Copy(spec)
            } else {
                Instruction::Add(spec)
            }
        }
        "WORKDIR" => {
            need_args("exactly one argument")?;
            Instruction::Workdir(args.trim().to_string())
        }
        "USER" => {
            need_args("exactly one argument")?;
            let words: Vec<&str> = args.split_whitespace().collect();
            if words.len() != 1 {
                return Err(error(line, "USER requires exactly one argument"));
            }
            Instruction::User(words[0].to_string())
        }
        "EXPOSE" => {
            need_args("at least one argument")?;
            Instruction::Expose(args.split_whitespace().map(str::to_string).collect())
        }
        "VOLUME" => {
            need_args("at least one argument")?;
            let (words, _) = json_or_words(args);
            if words.iter().any(|w| w.trim().is_empty()) {
                return Err(error(line, "VOLUME specified can not be an empty string"));
            }
            Instruction::Volume(words)
        }
        "STOPSIGNAL" => {
            need_args("exactly one argument")?;
            Instruction::StopSignal(args.trim().to_string())
        }
        "MAINTAINER" => {
            need_args("exactly one argument")?;
            Instruction::Maintainer(args.trim().to_string())
        }
        "HEALTHCHECK" => {
            let interval = flags.take("interval")?;
            let timeout = flags.take("timeout")?;
            let start_period = flags.take("start-period")?;
            let start_interval = flags.take("start-interval")?;
            let retries = flags.take("retries")?;
            let (kind, rest) = match args.find(char::is_whitespace) {
                Some(i) => (&args[..i], args[i..].trim_start()),
                None => (args, ""),
            };
            match kind.to_ascii_uppercase().as_str() {
                "NONE" if rest.is_empty() => Instruction::Healthcheck(Healthcheck::None),
                "NONE" => return Err(error(line, "HEALTHCHECK NONE takes no arguments")),
                "CMD" if !rest.is_empty() => {
                    if let Some(r) = &retries {
                        if r.parse::<u32>().map_or(true, |n| n == 0) {
                            return Err(error(line, format!("--retries={r}: must be a positive whole number")));
                        }
                    }
                    for (name, value) in [
                        ("interval", &interval),
                        ("timeout", &timeout),
                        ("start-period", &start_period),
                        ("start-interval", &start_interval),
                    ] {
                        if let Some(v) = value {
                            if parse_duration(v).is_none() {
                                return Err(error(line, format!("--{name}={v}: not a duration (use e.g. 30s, 1m30s)")));
                            }
                        }
                    }
                    Instruction::Healthcheck(Healthcheck::Check {
                        command: command_form(rest),
                        interval,
                        timeout,
                        start_period,
                        start_interval,
                        retries,
                    })
                }
                _ => return Err(error(line, "HEALTHCHECK must be NONE or CMD followed by a command")),
            }
        }
        "ONBUILD" => {
            need_args("at least one argument")?;
            if depth > 0 {
                return Err(error(line, "chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed"));
            }
            let trigger = parse_instruction(line, args, escape, depth + 1)?;
            if matches!(trigger, Instruction::From { .. } | Instruction::Maintainer(_)) {
                return Err(error(line, format!("{} isn't allowed as an ONBUILD trigger", trigger.keyword())));
            }
            Instruction::Onbuild(args.trim().to_string())
        }
        "SHELL" => match parse_json_array(args) {
            Some(words) if !words.is_empty() => Instruction::Shell(words),
            _ => return Err(error(line, "SHELL requires the arguments to be in JSON form, e.g. SHELL [\"/bin/bash\", \"-c\"]")),
        },
        _ => return Err(error(line, format!("unknown instruction: {keyword}"))),
    };
    flags.finish()?;
    Ok(instruction)
}

/// Parse the text of an ONBUILD trigger (as stored in an image config).
pub fn parse_trigger(text: &str, escape: char) -> Result<Instruction, ParseError> {
    let instruction = parse_instruction(0, text, escape, 1)?;
    if matches!(
        instruction,
        Instruction::From { .. } | Instruction::Maintainer(_) | Instruction::Onbuild(_)
    ) {
        return Err(error(
            0,
            format!(
                "{} isn't allowed as an ONBUILD trigger",
                instruction.keyword()
            ),
        ));
    }
    Ok(instruction)
}

/// docker's stage names: `[a-z][a-z0-9-_.]*`.
fn valid_stage_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// Exec form when the arguments are a JSON array of strings, else shell form.
fn command_form(args: &str) -> CommandForm {
    match parse_json_array(args) {
        Some(words) => CommandForm::Exec(words),
        None => CommandForm::Shell(args.trim().to_string()),
    }
}

fn parse_json_array(args: &str) -> Option<Vec<String>> {
    let trimmed = args.trim();
    if !trimmed.starts_with('[') {
        return None;
    }
    serde_json::from_str::<Vec<String>>(trimmed).ok()
}

/// JSON array of strings, or whitespace-separated words.
fn json_or_words(args: &str) -> (Vec<String>, bool) {
    match parse_json_array(args) {
        Some(words) => (words, true),
        None => (args.split_whitespace().map(str::to_string).collect(), false),
    }
}

/// Split on blanks outside quotes; quotes and escapes are kept in the words
/// (they are removed later by variable expansion), as moby's `parseWords`.
pub fn split_words(text: &str, escape: char) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut quote: Option<char> = None;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match quote {
            None if c.is_whitespace() => {
                if !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
            }
            None if c == '"' || c == '\'' => {
                quote = Some(c);
                word.push(c);
            }
            Some(q) if c == q => {
                quote = None;
                word.push(c);
            }
            _ if c == escape && quote != Some('\'') => {
                word.push(c);
                if let Some(next) = chars.next() {
                    word.push(next);
                }
            }
            _ => word.push(c),
        }
    }
    if !word.is_empty() {
        words.push(word);
    }
    words
}

/// `key=value ...` pairs; `legacy` allows `ENV key value with spaces`.
fn name_values(
    line: usize,
    keyword: &str,
    args: &str,
    escape: char,
    legacy: bool,
) -> Result<Vec<(String, String)>, ParseError> {
    let words = split_words(args, escape);
    let first_has_eq = words.first().is_some_and(|w| w.contains('='));
    if !first_has_eq {
        if legacy {
            let mut parts = args.trim().splitn(2, char::is_whitespace);
            let key = parts.next().unwrap_or_default().to_string();
            let value = parts.next().unwrap_or_default().trim().to_string();
            if value.is_empty() {
                return Err(error(line, format!("{keyword} must have two arguments: {keyword} key value or {keyword} key=value")));
            }
            return Ok(vec![(key, value)]);
        }
        return Err(error(
            line,
            format!(
                "Syntax error - can't find = in {:?}. Must be of the form: name=value",
                words.first().cloned().unwrap_or_default()
            ),
        ));
    }
    let mut pairs = Vec::new();
    for word in words {
        let Some((key, value)) = word.split_once('=') else {
            return Err(error(
                line,
                format!("Syntax error - can't find = in {word:?}. Must be of the form: name=value"),
            ));
        };
        if key.is_empty() {
            return Err(error(line, format!("{keyword} names can not be blank")));
        }
        pairs.push((key.to_string(), value.to_string()));
    }
    Ok(pairs)
}

/// Go's `time.ParseDuration` for the units a healthcheck uses; nanoseconds.
pub fn parse_duration(text: &str) -> Option<i64> {
    if text == "0" {
        return Some(0);
    }
    let mut total: f64 = 0.0;
    let mut rest = text;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let number_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if number_end == 0 {
            return None;
        }
        let number: f64 = rest[..number_end].parse().ok()?;
        rest = &rest[number_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_end] {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        rest = &rest[unit_end..];
        total += number * scale;
    }
    (total < i64::MAX as f64).then_some(total as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(text: &str) -> Instruction {
        let file = parse(&format!("FROM scratch\n{text}\n")).unwrap();
        file.stages[0].steps[0].instruction.clone()
    }

    fn err(text: &str) -> ParseError {
        parse(text).unwrap_err()
    }

    #[test]
    fn stages_global_args_and_names() {
        let file = parse(
            "ARG V=1\nFROM busybox:$V AS Build\nRUN true\nfrom build\nCOPY --from=build /a /b\n",
        )
        .unwrap();
        assert_eq!(file.global_args.len(), 1);
        assert_eq!(file.stages.len(), 2);
        assert_eq!(file.stages[0].name(), Some("build"));
        assert_eq!(file.stage_index("BUILD"), Some(0));
        assert_eq!(file.stage_index("1"), Some(1));
        assert_eq!(file.stage_index("nope"), None);
        assert_eq!(file.step_count(), 5);
        match &file.stages[1].steps[0].instruction {
            Instruction::Copy(spec) => {
                assert_eq!(spec.from.as_deref(), Some("build"));
                assert_eq!(spec.sources, vec!["/a"]);
                assert_eq!(spec.dest, "/b");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn continuations_comments_and_line_numbers() {
        let text = "FROM scratch\n\n# a comment\nRUN echo a \\\n  # inside\n\n  b \\\n  c\nCMD x\n";
        let file = parse(text).unwrap();
        let steps = &file.stages[0].steps;
        assert_eq!(steps[0].line, 4);
        assert_eq!(
            steps[0].instruction,
            Instruction::Run(CommandForm::Shell("echo a   b   c".into()))
        );
        assert_eq!(steps[1].line, 9);
    }

    #[test]
    fn escape_directive_changes_the_continuation_character() {
        let file = parse("# escape=`\nFROM scratch\nRUN dir C:\\ `\n  /w\n").unwrap();
        assert_eq!(file.escape, '`');
        assert_eq!(
            file.stages[0].steps[0].instruction,
            Instruction::Run(CommandForm::Shell("dir C:\\   /w".into()))
        );
        // A directive after a comment is just a comment.
        let file = parse("# hello\n# escape=`\nFROM scratch\nRUN a \\\n b\n").unwrap();
        assert_eq!(file.escape, '\\');
        assert!(err("# escape=x\nFROM scratch\n")
            .message
            .contains("invalid escape"));
        assert!(err("# escape=`\n# escape=`\nFROM scratch\n")
            .message
            .contains("only one"));
    }

    #[test]
    fn exec_and_shell_forms() {
        assert_eq!(
            one("CMD [\"a\", \"b c\"]"),
            Instruction::Cmd(CommandForm::Exec(vec!["a".into(), "b c".into()]))
        );
        assert_eq!(
            one("CMD [\"a\", 1]"),
            Instruction::Cmd(CommandForm::Shell("[\"a\", 1]".into()))
        );
        assert_eq!(
            one("ENTRYPOINT echo \"hi\""),
            Instruction::Entrypoint(CommandForm::Shell("echo \"hi\"".into()))
        );
        assert_eq!(
            one("CMD"),
            Instruction::Cmd(CommandForm::Shell(String::new()))
        );
        assert_eq!(
            one("SHELL [\"/bin/bash\", \"-c\"]"),
            Instruction::Shell(vec!["/bin/bash".into(), "-c".into()])
        );
        assert!(err("FROM scratch\nSHELL /bin/bash -c\n")
            .message
            .contains("JSON"));
    }

    #[test]
    fn env_label_and_arg_pairs() {
        assert_eq!(
            one("ENV A=1 B=\"two words\" C=x\\ y"),
            Instruction::Env(vec![
                ("A".into(), "1".into()),
                ("B".into(), "\"two words\"".into()),
                ("C".into(), "x\\ y".into()),
            ])
        );
        assert_eq!(
            one("ENV LEGACY value with spaces"),
            Instruction::Env(vec![("LEGACY".into(), "value with spaces".into())])
        );
        assert_eq!(
            one("LABEL \"com.x\"=\"y z\" a=b"),
            Instruction::Label(vec![
                ("\"com.x\"".into(), "\"y z\"".into()),
                ("a".into(), "b".into())
            ])
        );
        assert_eq!(
            one("ARG A B=2"),
            Instruction::Arg(vec![("A".into(), None), ("B".into(), Some("2".into()))])
        );
        assert!(err("FROM scratch\nLABEL novalue\n")
            .message
            .contains("can't find ="));
        assert!(err("FROM scratch\nENV onlykey\n")
            .message
            .contains("two arguments"));
        assert!(err("FROM scratch\nARG a-b\n")
            .message
            .contains("invalid ARG"));
    }

    #[test]
    fn copy_flags_and_forms() {
        match one("COPY --chown=app:app --chmod=0644 a b* /dst/") {
            Instruction::Copy(spec) => {
                assert_eq!(spec.chown.as_deref(), Some("app:app"));
                assert_eq!(spec.chmod.as_deref(), Some("0644"));
                assert_eq!(spec.sources, vec!["a", "b*"]);
                assert_eq!(spec.dest, "/dst/");
                assert!(!spec.json);
            }
            other => panic!("{other:?}"),
        }
        match one("ADD [\"a b\", \"/c d/\"]") {
            Instruction::Add(spec) => {
                assert_eq!(spec.sources, vec!["a b"]);
                assert!(spec.json);
            }
            other => panic!("{other:?}"),
        }
        assert!(err("FROM scratch\nCOPY onlyone\n")
            .message
            .contains("at least two"));
        assert!(err("FROM scratch\nCOPY --bogus=1 a b\n")
            .message
            .contains("unknown flag: --bogus"));
        assert!(err("FROM scratch\nADD --from=x a b\n")
            .message
            .contains("unknown flag: --from"));
        assert!(err("FROM scratch\nCOPY --chmod=999 a b\n")
            .message
            .contains("octal"));
        assert!(err("FROM scratch\nCOPY --chown a b\n")
            .message
            .contains("missing a value"));
    }

    #[test]
    fn errors_name_the_line() {
        let e = err("FROM scratch\nRUN true\nFROB x\n");
        assert_eq!(e.line, 3);
        assert_eq!(
            e.to_string(),
            "dockerfile parse error on line 3: unknown instruction: FROB"
        );
        assert!(err("RUN true\nFROM scratch\n")
            .message
            .contains("before the first FROM"));
        assert!(err("# only a comment\n").message.contains("no FROM"));
        assert!(err("FROM a b\n").message.contains("one or three"));
        assert!(err("FROM a AS 1x\n").message.contains("invalid name"));
        assert!(err("FROM a AS x\nFROM b AS X\n")
            .message
            .contains("duplicate stage name"));
        assert!(err("FROM scratch\nUSER\n")
            .message
            .contains("USER requires"));
    }

    #[test]
    fn healthcheck_onbuild_and_misc() {
        match one("HEALTHCHECK --interval=5s --retries=3 CMD [\"true\"]") {
            Instruction::Healthcheck(Healthcheck::Check {
                interval,
                retries,
                command,
                ..
            }) => {
                assert_eq!(interval.as_deref(), Some("5s"));
                assert_eq!(retries.as_deref(), Some("3"));
                assert_eq!(command, CommandForm::Exec(vec!["true".into()]));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            one("HEALTHCHECK NONE"),
            Instruction::Healthcheck(Healthcheck::None)
        );
        assert!(err("FROM scratch\nHEALTHCHECK --interval=5x CMD true\n")
            .message
            .contains("duration"));
        assert_eq!(
            one("ONBUILD RUN echo hi"),
            Instruction::Onbuild("RUN echo hi".into())
        );
        assert!(err("FROM scratch\nONBUILD ONBUILD RUN x\n")
            .message
            .contains("chaining"));
        assert!(err("FROM scratch\nONBUILD FROM x\n")
            .message
            .contains("isn't allowed"));
        assert!(err("FROM scratch\nONBUILD BOGUS x\n")
            .message
            .contains("unknown instruction"));
        assert_eq!(
            one("EXPOSE 80/tcp 53/udp"),
            Instruction::Expose(vec!["80/tcp".into(), "53/udp".into()])
        );
        assert_eq!(
            one("VOLUME [\"/a\", \"/b\"]"),
            Instruction::Volume(vec!["/a".into(), "/b".into()])
        );
        assert_eq!(
            one("VOLUME /a /b"),
            Instruction::Volume(vec!["/a".into(), "/b".into()])
        );
        assert_eq!(
            one("maintainer Jane <j@x>"),
            Instruction::Maintainer("Jane <j@x>".into())
        );
        assert_eq!(
            one("STOPSIGNAL SIGINT"),
            Instruction::StopSignal("SIGINT".into())
        );
        assert!(err("FROM scratch\nRUN --mount=type=cache,target=/x true\n")
            .message
            .contains("BuildKit"));
    }

    #[test]
    fn durations_parse_like_go() {
        assert_eq!(parse_duration("30s"), Some(30_000_000_000));
        assert_eq!(parse_duration("1m30s"), Some(90_000_000_000));
        assert_eq!(parse_duration("1.5s"), Some(1_500_000_000));
        assert_eq!(parse_duration("10"), None);
        assert_eq!(parse_duration(""), None);
        assert_eq!(parse_duration("s"), None);
    }

    #[test]
    fn split_words_keeps_quotes() {
        assert_eq!(
            split_words("a=\"b c\" d='e f' g=h\\ i", '\\'),
            vec!["a=\"b c\"", "d='e f'", "g=h\\ i"]
        );
    }

    #[test]
    fn never_panics_on_odd_input() {
        let pieces = [
            "FROM",
            " ",
            "\n",
            "\\",
            "`",
            "#",
            "escape=`",
            "[",
            "]",
            "\"",
            "'",
            "=",
            "--",
            "COPY",
            "ONBUILD",
            "é",
            "\r",
            "HEALTHCHECK",
            "CMD",
            "AS",
        ];
        let mut text = String::new();
        let mut state: u64 = 0x9e3779b97f4a7c15;
        for _ in 0..20_000 {
            text.clear();
            for _ in 0..12 {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                text.push_str(pieces[(state % pieces.len() as u64) as usize]);
            }
            let _ = parse(&text);
        }
    }
}
