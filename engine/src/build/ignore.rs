//! `.dockerignore`: which files of the build context COPY and ADD may see.
//!
//! Mechanism: pure pattern matching, following moby's `patternmatcher`:
//! - one pattern per line; `#` lines are comments; blank lines are ignored;
//!   a leading `!` makes the line an *exception* (re-includes);
//! - patterns are cleaned like Go's `filepath.Clean` and a leading `/` is
//!   dropped, so `/foo` and `foo` both mean `foo` at the context root;
//! - Go `filepath.Match` syntax per path component (`*`, `?`, `[a-z]`,
//!   `[^x]`, `\` escapes), plus `**` matching any number of directories;
//! - a pattern matching a directory also matches everything below it;
//! - the *last* matching line decides: excluded unless it was an exception.
//!
//! Paths are given relative to the context root with `/` separators.

/// Why a `.dockerignore` (or COPY glob) pattern is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid pattern {pattern:?} in .dockerignore: {reason}")]
pub struct PatternError {
    pub pattern: String,
    pub reason: String,
}

#[derive(Debug, Clone)]
struct Pattern {
    segments: Vec<String>,
    exception: bool,
}

/// The compiled patterns of one `.dockerignore`.
#[derive(Debug, Clone, Default)]
pub struct IgnoreMatcher {
    patterns: Vec<Pattern>,
}

impl IgnoreMatcher {
    /// Compile the text of a `.dockerignore` file.
    pub fn parse(text: &str) -> Result<IgnoreMatcher, PatternError> {
        let mut patterns = Vec::new();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (exception, raw) = match line.strip_prefix('!') {
                Some(rest) => (true, rest.trim()),
                None => (false, line),
            };
            let cleaned = clean(raw);
            if cleaned.is_empty() || cleaned == "." {
                continue;
            }
            let segments: Vec<String> = cleaned.split('/').map(str::to_string).collect();
            for segment in &segments {
                check_segment(segment).map_err(|reason| PatternError {
                    pattern: line.to_string(),
                    reason,
                })?;
            }
            patterns.push(Pattern {
                segments,
                exception,
            });
        }
        Ok(IgnoreMatcher { patterns })
    }

    /// True when some line is an exception: an excluded directory must then
    /// still be walked, since something below it may be re-included.
    pub fn has_exceptions(&self) -> bool {
        self.patterns.iter().any(|p| p.exception)
    }

    /// Whether `path` (relative, `/`-separated) is excluded from the context.
    pub fn is_excluded(&self, path: &str) -> bool {
        let cleaned = clean(path);
        let parts: Vec<&str> = cleaned.split('/').filter(|s| !s.is_empty()).collect();
        let mut excluded = false;
        for pattern in &self.patterns {
            let matched = (1..=parts.len()).any(|n| match_segments(&pattern.segments, &parts[..n]));
            if matched {
                excluded = !pattern.exception;
            }
        }
        excluded
    }
}

/// Lexical cleaning as Go's `filepath.Clean`, then no leading `/`.
pub fn clean(path: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if out.last().is_some_and(|p| *p != "..") {
                    out.pop();
                } else if !path.starts_with('/') {
                    out.push("..");
                }
            }
            other => out.push(other),
        }
    }
    out.join("/")
}

fn check_segment(segment: &str) -> Result<(), String> {
    // A pattern that cannot match anything would silently hide mistakes.
    let chars: Vec<char> = segment.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '\\' => {
                if i + 1 >= chars.len() {
                    return Err("ends with an escape character".into());
                }
                i += 2;
            }
            '[' => {
                let Some(end) = class_end(&chars, i) else {
                    return Err("unclosed character class '['".into());
                };
                i = end + 1;
            }
            _ => i += 1,
        }
    }
    Ok(())
}

/// Match pattern segments against path segments; `**` spans any number of them.
pub fn match_segments(pattern: &[String], path: &[&str]) -> bool {
    match pattern.split_first() {
        None => path.is_empty(),
        Some((first, rest)) if first == "**" => {
            (0..=path.len()).any(|skip| match_segments(rest, &path[skip..]))
        }
        Some((first, rest)) => match path.split_first() {
            Some((name, path_rest)) => fnmatch(first, name) && match_segments(rest, path_rest),
            None => false,
        },
    }
}

/// Go's `filepath.Match` for one path component.
pub fn fnmatch(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    fnmatch_at(&p, 0, &n, 0, 0)
}

fn fnmatch_at(p: &[char], mut pi: usize, n: &[char], mut ni: usize, depth: usize) -> bool {
    if depth > 256 {
        return false;
    }
    while pi < p.len() {
        match p[pi] {
            '*' => {
                while pi < p.len() && p[pi] == '*' {
                    pi += 1;
                }
                if pi == p.len() {
                    return true;
                }
                return (ni..=n.len()).any(|start| fnmatch_at(p, pi, n, start, depth + 1));
            }
            '?' => {
                if ni >= n.len() {
                    return false;
                }
                pi += 1;
                ni += 1;
            }
            '[' => {
                let Some(end) = class_end(p, pi) else {
                    return false;
                };
                if ni >= n.len() || !class_matches(&p[pi + 1..end], n[ni]) {
                    return false;
                }
                pi = end + 1;
                ni += 1;
            }
            '\\' if pi + 1 < p.len() => {
                if ni >= n.len() || n[ni] != p[pi + 1] {
                    return false;
                }
                pi += 2;
                ni += 1;
            }
            c => {
                if ni >= n.len() || n[ni] != c {
                    return false;
                }
                pi += 1;
                ni += 1;
            }
        }
    }
    ni == n.len()
}

/// Index of the `]` closing the class opened at `start`.
fn class_end(p: &[char], start: usize) -> Option<usize> {
    let mut i = start + 1;
    if i < p.len() && p[i] == '^' {
        i += 1;
    }
    let mut first = true;
    while i < p.len() {
        match p[i] {
            ']' if !first => return Some(i),
            '\\' => i += 2,
            _ => i += 1,
        }
        first = false;
    }
    None
}

fn class_matches(class: &[char], c: char) -> bool {
    let (negated, class) = match class.first() {
        Some('^') => (true, &class[1..]),
        _ => (false, class),
    };
    let mut i = 0;
    let mut matched = false;
    while i < class.len() {
        let mut lo = class[i];
        if lo == '\\' && i + 1 < class.len() {
            i += 1;
            lo = class[i];
        }
        let mut hi = lo;
        if i + 2 < class.len() && class[i + 1] == '-' {
            hi = class[i + 2];
            if hi == '\\' && i + 3 < class.len() {
                hi = class[i + 3];
                i += 1;
            }
            i += 2;
        }
        if lo <= c && c <= hi {
            matched = true;
        }
        i += 1;
    }
    matched != negated
}

/// True when `text` has glob metacharacters (COPY sources are globs only then).
pub fn has_wildcards(text: &str) -> bool {
    text.contains(['*', '?', '['])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(text: &str) -> IgnoreMatcher {
        IgnoreMatcher::parse(text).unwrap()
    }

    #[test]
    fn go_filepath_match_semantics() {
        assert!(fnmatch("*.txt", "a.txt"));
        assert!(!fnmatch("*.txt", "a.txt.bak"));
        assert!(fnmatch("a?c", "abc"));
        assert!(fnmatch("[a-c]x", "bx"));
        assert!(!fnmatch("[^a-c]x", "bx"));
        assert!(fnmatch("[^a-c]x", "dx"));
        assert!(fnmatch("\\*", "*"));
        assert!(!fnmatch("\\*", "a"));
        assert!(fnmatch("*", ""));
        assert!(fnmatch("a*b*c", "aXbYc"));
    }

    #[test]
    fn directories_exclude_their_contents_and_last_match_wins() {
        let ignore = m("# comment\n\nnode_modules\n*.log\n!keep.log\n/build/\ntemp?\n");
        assert!(ignore.is_excluded("node_modules"));
        assert!(ignore.is_excluded("node_modules/x/y.js"));
        assert!(ignore.is_excluded("a.log"));
        assert!(!ignore.is_excluded("keep.log"));
        assert!(
            !ignore.is_excluded("sub/a.log"),
            "* does not cross directories"
        );
        assert!(ignore.is_excluded("build/out.o"));
        assert!(ignore.is_excluded("temp1"));
        assert!(!ignore.is_excluded("src/main.rs"));
        assert!(ignore.has_exceptions());
    }

    #[test]
    fn double_star_spans_directories() {
        let ignore = m("**/*.tmp\ndocs/**/draft\n");
        assert!(ignore.is_excluded("a.tmp"));
        assert!(ignore.is_excluded("x/y/z.tmp"));
        assert!(ignore.is_excluded("docs/draft"));
        assert!(ignore.is_excluded("docs/a/b/draft/file"));
        assert!(!ignore.is_excluded("docs/final"));
    }

    #[test]
    fn exceptions_reinclude_inside_excluded_directories() {
        let ignore = m("secrets\n!secrets/public.pem\n");
        assert!(ignore.is_excluded("secrets/private.pem"));
        assert!(!ignore.is_excluded("secrets/public.pem"));
        let everything = m("*\n!src\n");
        assert!(everything.is_excluded("README"));
        assert!(!everything.is_excluded("src/lib.rs"));
    }

    #[test]
    fn cleaning_and_errors() {
        assert_eq!(clean("/a/./b/../c/"), "c".replace('c', "a/c"));
        assert_eq!(clean("../x"), "../x");
        assert_eq!(clean("/../x"), "x");
        let ignore = m("./a/../b\n");
        assert!(ignore.is_excluded("b"));
        assert!(IgnoreMatcher::parse("[abc\n").is_err());
        assert!(IgnoreMatcher::parse("abc\\\n").is_err());
    }
}
