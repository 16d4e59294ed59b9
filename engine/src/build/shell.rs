//! Variable substitution in Dockerfile words, exactly as docker does it.
//!
//! Mechanism: pure string processing (no I/O, no shell is run). A word such
//! as `"${HOME:-/root}"/bin` goes through a small lexer that follows moby's
//! `shell/lex.go`:
//! - outside quotes the escape character (`\`, or `` ` `` after
//!   `# escape=``) makes the next character literal;
//! - `'...'` is literal, the quotes are removed;
//! - `"..."` expands variables, the escape character only escapes `"`, `$`
//!   and itself, the quotes are removed;
//! - `$VAR` and `${VAR}` expand (an unset variable is empty);
//!   `${VAR:-word}` / `${VAR-word}` give `word` when VAR is unset-or-empty /
//!   unset; `${VAR:+word}` / `${VAR+word}` give `word` when VAR is set and
//!   non-empty / set; `${VAR:?msg}` / `${VAR?msg}` fail with `msg`.
//!   `word` itself is expanded.
//!
//! Which instructions substitute is decided by the executor (ADD, COPY, ENV,
//! EXPOSE, FROM, LABEL, STOPSIGNAL, USER, VOLUME, WORKDIR, ARG defaults;
//! never RUN, CMD or ENTRYPOINT, whose variables the shell expands at run
//! time). Every error is a value, never a panic: input is untrusted.

/// Why a word could not be expanded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShellError {
    #[error("unexpected end of statement while looking for matching single-quote")]
    UnterminatedSingleQuote,
    #[error("unexpected end of statement while looking for matching double-quote")]
    UnterminatedDoubleQuote,
    #[error("missing '}}' in {0:?}")]
    MissingBrace(String),
    #[error("bad substitution in {0:?}: use ${{NAME}}, ${{NAME:-default}}, ${{NAME:+alternative}} or ${{NAME:?message}}")]
    BadSubstitution(String),
    #[error("{name}: {message}")]
    Required { name: String, message: String },
}

/// How deep `${A:-${B:-${C}}}` may nest before the input is refused.
const MAX_DEPTH: usize = 64;

/// Expand `word` with variables from `lookup`; quotes are removed.
pub fn expand(
    word: &str,
    escape: char,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<String, ShellError> {
    let chars: Vec<char> = word.chars().collect();
    let mut lexer = Lexer {
        chars: &chars,
        pos: 0,
        escape,
        lookup,
        word,
    };
    lexer.process(None, 0)
}

struct Lexer<'a> {
    chars: &'a [char],
    pos: usize,
    escape: char,
    lookup: &'a dyn Fn(&str) -> Option<String>,
    /// The whole input, for error messages.
    word: &'a str,
}

impl Lexer<'_> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += 1;
        Some(c)
    }

    /// Process until `stop` (consumed) or the end. `stop` is `}` inside
    /// `${NAME:-...}`.
    fn process(&mut self, stop: Option<char>, depth: usize) -> Result<String, ShellError> {
        if depth > MAX_DEPTH {
            return Err(ShellError::BadSubstitution(self.word.to_string()));
        }
        let mut out = String::new();
        loop {
            let Some(c) = self.next() else {
                return match stop {
                    Some(_) => Err(ShellError::MissingBrace(self.word.to_string())),
                    None => Ok(out),
                };
            };
            if Some(c) == stop {
                return Ok(out);
            }
            match c {
                c if c == self.escape => match self.next() {
                    Some(n) => out.push(n),
                    None => out.push(c),
                },
                '\'' => out.push_str(&self.single_quoted()?),
                '"' => out.push_str(&self.double_quoted(depth)?),
                '$' => out.push_str(&self.dollar(depth)?),
                c => out.push(c),
            }
        }
    }

    fn single_quoted(&mut self) -> Result<String, ShellError> {
        let mut out = String::new();
        loop {
            match self.next() {
                None => return Err(ShellError::UnterminatedSingleQuote),
                Some('\'') => return Ok(out),
                Some(c) => out.push(c),
            }
        }
    }

    fn double_quoted(&mut self, depth: usize) -> Result<String, ShellError> {
        let mut out = String::new();
        loop {
            match self.next() {
                None => return Err(ShellError::UnterminatedDoubleQuote),
                Some('"') => return Ok(out),
                Some('$') => out.push_str(&self.dollar(depth)?),
                Some(c) if c == self.escape => match self.peek() {
                    Some(n) if n == '"' || n == '$' || n == self.escape => {
                        self.pos += 1;
                        out.push(n);
                    }
                    _ => out.push(c),
                },
                Some(c) => out.push(c),
            }
        }
    }

    fn name(&mut self) -> String {
        let mut name = String::new();
        while let Some(c) = self.peek() {
            if c.is_ascii_alphanumeric() || c == '_' {
                name.push(c);
                self.pos += 1;
            } else {
                break;
            }
        }
        name
    }

    /// After a `$`.
    fn dollar(&mut self, depth: usize) -> Result<String, ShellError> {
        if self.peek() != Some('{') {
            let name = self.name();
            if name.is_empty() {
                return Ok("$".to_string());
            }
            return Ok((self.lookup)(&name).unwrap_or_default());
        }
        self.pos += 1; // '{'
        let name = self.name();
        if name.is_empty() {
            return Err(ShellError::BadSubstitution(self.word.to_string()));
        }
        let value = (self.lookup)(&name);
        match self.next() {
            Some('}') => Ok(value.unwrap_or_default()),
            Some(':') => {
                let modifier = self.next();
                let word = self.process(Some('}'), depth + 1)?;
                let set_non_empty = value.as_deref().is_some_and(|v| !v.is_empty());
                self.apply(&name, modifier, set_non_empty, value, word)
            }
            Some(m @ ('-' | '+' | '?')) => {
                let word = self.process(Some('}'), depth + 1)?;
                let set = value.is_some();
                self.apply(&name, Some(m), set, value, word)
            }
            None => Err(ShellError::MissingBrace(self.word.to_string())),
            Some(_) => Err(ShellError::BadSubstitution(self.word.to_string())),
        }
    }

    fn apply(
        &self,
        name: &str,
        modifier: Option<char>,
        present: bool,
        value: Option<String>,
        word: String,
    ) -> Result<String, ShellError> {
        match modifier {
            Some('-') => Ok(if present {
                value.unwrap_or_default()
            } else {
                word
            }),
            Some('+') => Ok(if present { word } else { String::new() }),
            Some('?') if present => Ok(value.unwrap_or_default()),
            Some('?') => Err(ShellError::Required {
                name: name.to_string(),
                message: if word.is_empty() {
                    "is not allowed to be unset".to_string()
                } else {
                    word
                },
            }),
            _ => Err(ShellError::BadSubstitution(self.word.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "HOME" => Some("/root".into()),
            "EMPTY" => Some(String::new()),
            "SPACE" => Some("a b".into()),
            "V1" => Some("1".into()),
            _ => None,
        }
    }

    fn x(word: &str) -> String {
        expand(word, '\\', &env).unwrap()
    }

    #[test]
    fn plain_and_braced_variables() {
        assert_eq!(x("$HOME/bin"), "/root/bin");
        assert_eq!(x("${HOME}bin"), "/rootbin");
        assert_eq!(x("$NOPE-x"), "-x");
        assert_eq!(x("a$"), "a$");
        assert_eq!(x("$ x"), "$ x");
        assert_eq!(x("${V1}${V1}"), "11");
        assert_eq!(x("$SPACE"), "a b");
    }

    #[test]
    fn modifiers_follow_posix_as_docker_does() {
        assert_eq!(x("${NOPE:-def}"), "def");
        assert_eq!(x("${EMPTY:-def}"), "def");
        assert_eq!(x("${EMPTY-def}"), "");
        assert_eq!(x("${NOPE-def}"), "def");
        assert_eq!(x("${HOME:-def}"), "/root");
        assert_eq!(x("${HOME:+alt}"), "alt");
        assert_eq!(x("${EMPTY:+alt}"), "");
        assert_eq!(x("${EMPTY+alt}"), "alt");
        assert_eq!(x("${NOPE:+alt}"), "");
        assert_eq!(x("${NOPE:-$HOME/x}"), "/root/x");
        assert_eq!(x("${NOPE:-${V1:+yes}}"), "yes");
        assert_eq!(x("${HOME:?}"), "/root");
        let err = expand("${NOPE:?must be set}", '\\', &env).unwrap_err();
        assert_eq!(err.to_string(), "NOPE: must be set");
    }

    #[test]
    fn quotes_and_escapes() {
        assert_eq!(x("'$HOME'"), "$HOME");
        assert_eq!(x("\"$HOME\""), "/root");
        assert_eq!(x("\\$HOME"), "$HOME");
        assert_eq!(x("\"\\$HOME\""), "$HOME");
        assert_eq!(x("\"a\\b\""), "a\\b");
        assert_eq!(x("\"a\\\"b\""), "a\"b");
        assert_eq!(x("a\\ b"), "a b");
        assert_eq!(x("end\\"), "end\\");
        assert_eq!(x("'it''s'"), "its");
        assert_eq!(expand("`$HOME", '`', &env).unwrap(), "$HOME");
        assert_eq!(expand("C:\\dir", '`', &env).unwrap(), "C:\\dir");
    }

    #[test]
    fn malformed_input_is_an_error_not_a_panic() {
        for bad in [
            "'open",
            "\"open",
            "${",
            "${HOME",
            "${}",
            "${HOME%x}",
            "${NOPE:-x",
            "${!x}",
        ] {
            assert!(expand(bad, '\\', &env).is_err(), "{bad:?} should fail");
        }
        let deep = "${A:-".repeat(200);
        assert!(expand(&deep, '\\', &env).is_err());
    }

    #[test]
    fn never_panics_on_arbitrary_bytes() {
        // A cheap deterministic fuzz: every short combination of the
        // characters that matter to the lexer.
        let alphabet = ['$', '{', '}', ':', '-', '+', '?', '\'', '"', '\\', 'A', ' '];
        let mut word = String::new();
        for a in alphabet {
            for b in alphabet {
                for c in alphabet {
                    for d in alphabet {
                        word.clear();
                        word.extend([a, b, c, d]);
                        let _ = expand(&word, '\\', &env);
                    }
                }
            }
        }
    }
}
