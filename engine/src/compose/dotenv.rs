//! `.env` and `env_file:` files: `KEY=VALUE` lines, as docker compose reads
//! them.
//!
//! - blank lines and lines starting with `#` are skipped; `export KEY=VALUE`
//!   is accepted (so the file can be sourced by a shell too);
//! - an unquoted value is trimmed, and ` #...` ends it (a comment);
//! - `'single quotes'` keep the text as it is;
//! - `"double quotes"` understand `\n`, `\t`, `\"` and `\\`;
//! - a line with only `KEY` takes KEY's value from berth's environment (and
//!   is dropped when it has none).
//!
//! Values are not interpolated (docker compose expands `${VAR}` in `.env`
//! values; berth does not, yet).

use std::path::Path;

/// Read `path` into `(key, value)` pairs, in file order.
pub fn read(
    path: &Path,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<(String, String)>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read the env file {}: {e}", path.display()))?;
    parse(&text, lookup).map_err(|(line, why)| format!("{}:{line}: {why}", path.display()))
}

/// Parse env file text; an error carries its 1-based line.
pub fn parse(
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<(String, String)>, (usize, String)> {
    let mut pairs = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let number = index + 1;
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line
            .strip_prefix("export ")
            .map(str::trim_start)
            .unwrap_or(line);
        let (key, value) = match line.split_once('=') {
            Some((key, value)) => (key.trim_end(), Some(value)),
            None => (line, None),
        };
        if key.is_empty() || key.contains(char::is_whitespace) {
            return Err((
                number,
                format!("variable name {key:?} is empty or contains spaces: write KEY=VALUE"),
            ));
        }
        match value {
            Some(value) => pairs.push((key.to_string(), unquote(value.trim_start(), number)?)),
            None => {
                if let Some(value) = lookup(key) {
                    pairs.push((key.to_string(), value));
                }
            }
        }
    }
    Ok(pairs)
}

fn unquote(value: &str, line: usize) -> Result<String, (usize, String)> {
    let unclosed = |q: char| {
        (
            line,
            format!("the value's opening {q} is not closed on this line"),
        )
    };
    if let Some(rest) = value.strip_prefix('\'') {
        let end = rest.find('\'').ok_or_else(|| unclosed('\''))?;
        return Ok(rest[..end].to_string());
    }
    if let Some(rest) = value.strip_prefix('"') {
        let mut out = String::new();
        let mut chars = rest.chars();
        loop {
            match chars.next() {
                None => return Err(unclosed('"')),
                Some('"') => return Ok(out),
                Some('\\') => match chars.next() {
                    Some('n') => out.push('\n'),
                    Some('t') => out.push('\t'),
                    Some('r') => out.push('\r'),
                    Some(c @ ('"' | '\\' | '$')) => out.push(c),
                    Some(c) => {
                        out.push('\\');
                        out.push(c);
                    }
                    None => return Err(unclosed('"')),
                },
                Some(c) => out.push(c),
            }
        }
    }
    let value = match value.find(" #") {
        Some(comment) => &value[..comment],
        None => value,
    };
    Ok(value.trim_end().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        (name == "FROM_HOST").then(|| "host value".to_string())
    }

    #[test]
    fn values_quotes_comments_and_exports() {
        let text = "# comment\n\nA=1\nexport B = two words  # note\nC='single $X # kept'\nD=\"line\\nbreak \\\"q\\\"\"\nE=\nFROM_HOST\nMISSING\n";
        let pairs = parse(text, &env).unwrap();
        let get = |k: &str| {
            pairs
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("A"), Some("1"));
        assert_eq!(get("B"), Some("two words"));
        assert_eq!(get("C"), Some("single $X # kept"));
        assert_eq!(get("D"), Some("line\nbreak \"q\""));
        assert_eq!(get("E"), Some(""));
        assert_eq!(get("FROM_HOST"), Some("host value"));
        assert_eq!(get("MISSING"), None);
    }

    #[test]
    fn bad_lines_name_their_number() {
        assert_eq!(parse("A=1\nBAD KEY=2\n", &env).unwrap_err().0, 2);
        assert_eq!(parse("A=\"open\n", &env).unwrap_err().0, 1);
        assert_eq!(parse("=x\n", &env).unwrap_err().0, 1);
    }
}
