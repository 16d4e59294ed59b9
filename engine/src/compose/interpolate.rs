//! Variable interpolation in compose files: `$VAR`, `${VAR}`, and the
//! shell-like forms compose accepts, applied to every value (never to keys)
//! before the file is read as a compose model:
//!
//! | form | value |
//! |---|---|
//! | `${VAR:-default}` | `default` when VAR is unset or empty |
//! | `${VAR-default}` | `default` when VAR is unset |
//! | `${VAR:?message}` | error `message` when VAR is unset or empty |
//! | `${VAR?message}` | error `message` when VAR is unset |
//! | `${VAR:+other}` | `other` when VAR is set and not empty, else empty |
//! | `${VAR+other}` | `other` when VAR is set, else empty |
//! | `$$` | a literal `$` |
//!
//! Defaults may themselves contain variables (`${A:-${B}}`). An unset
//! variable without a default becomes the empty string with a warning, as
//! docker compose does.

/// Interpolate `text` with `lookup`; warnings (unset variables) are pushed
/// to `warnings`. The error says what is wrong with the text.
pub fn interpolate(
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    warnings: &mut Vec<String>,
) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(more) = after.strip_prefix('$') {
            out.push('$');
            rest = more;
        } else if let Some(braced) = after.strip_prefix('{') {
            let end = matching_brace(braced).ok_or_else(|| {
                format!("invalid interpolation format in {text:?}: a \"${{\" is not closed")
            })?;
            out.push_str(&expand_braced(&braced[..end], text, lookup, warnings)?);
            rest = &braced[end + 1..];
        } else {
            let name_len = name_length(after);
            if name_len == 0 {
                return Err(format!(
                    "invalid interpolation format in {text:?}: write \"$$\" for a literal \"$\""
                ));
            }
            out.push_str(&value_or_warn(&after[..name_len], lookup, warnings));
            rest = &after[name_len..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// The length of the variable name at the start of `text`.
fn name_length(text: &str) -> usize {
    let mut len = 0;
    for (i, c) in text.char_indices() {
        let ok = c == '_' || c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit());
        if !ok {
            break;
        }
        len = i + c.len_utf8();
    }
    len
}

/// The index of the `}` closing a `${`, counting nested `${`.
fn matching_brace(text: &str) -> Option<usize> {
    let mut depth = 0;
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'$' if bytes.get(i + 1) == Some(&b'{') => {
                depth += 1;
                i += 1;
            }
            b'}' if depth == 0 => return Some(i),
            b'}' => depth -= 1,
            _ => {}
        }
        i += 1;
    }
    None
}

/// The inside of `${...}`.
fn expand_braced(
    inner: &str,
    whole: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    warnings: &mut Vec<String>,
) -> Result<String, String> {
    let name_len = name_length(inner);
    let name = &inner[..name_len];
    let op = &inner[name_len..];
    if name.is_empty() {
        return Err(format!(
            "invalid interpolation format in {whole:?}: \"${{{inner}}}\" names no variable"
        ));
    }
    let value = lookup(name);
    let set = value.is_some();
    let non_empty = value.as_deref().is_some_and(|v| !v.is_empty());
    let mut nested = |text: &str| interpolate(text, lookup, warnings);
    let (operator, argument) = split_operator(op).ok_or_else(|| {
        format!("invalid interpolation format in {whole:?}: unknown form \"${{{inner}}}\"")
    })?;
    Ok(match operator {
        "" => match value {
            Some(v) => v,
            None => value_or_warn(name, lookup, warnings),
        },
        ":-" => {
            if non_empty {
                value.unwrap_or_default()
            } else {
                nested(argument)?
            }
        }
        "-" => {
            if set {
                value.unwrap_or_default()
            } else {
                nested(argument)?
            }
        }
        ":+" => {
            if non_empty {
                nested(argument)?
            } else {
                String::new()
            }
        }
        "+" => {
            if set {
                nested(argument)?
            } else {
                String::new()
            }
        }
        ":?" | "?" => {
            let ok = if operator == ":?" { non_empty } else { set };
            if !ok {
                let message = nested(argument)?;
                return Err(if message.is_empty() {
                    format!("required variable {name} is missing a value")
                } else {
                    format!("required variable {name} is missing a value: {message}")
                });
            }
            value.unwrap_or_default()
        }
        _ => unreachable!("split_operator returns only the forms above"),
    })
}

fn split_operator(op: &str) -> Option<(&str, &str)> {
    if op.is_empty() {
        return Some(("", ""));
    }
    for operator in [":-", ":?", ":+", "-", "?", "+"] {
        if let Some(argument) = op.strip_prefix(operator) {
            return Some((operator, argument));
        }
    }
    None
}

fn value_or_warn(
    name: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    warnings: &mut Vec<String>,
) -> String {
    lookup(name).unwrap_or_else(|| {
        let warning = format!("The \"{name}\" variable is not set. Defaulting to a blank string.");
        if !warnings.contains(&warning) {
            warnings.push(warning);
        }
        String::new()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "TAG" => Some("1.2".into()),
            "EMPTY" => Some(String::new()),
            "PORT" => Some("8080".into()),
            _ => None,
        }
    }

    fn run(text: &str) -> Result<String, String> {
        interpolate(text, &env, &mut Vec::new())
    }

    #[test]
    fn plain_and_braced_variables() {
        assert_eq!(run("app:$TAG").unwrap(), "app:1.2");
        assert_eq!(run("app:${TAG}-x").unwrap(), "app:1.2-x");
        assert_eq!(run("$${TAG} costs $$5").unwrap(), "${TAG} costs $5");
        assert_eq!(run("${PORT}:80").unwrap(), "8080:80");
    }

    #[test]
    fn defaults_alternatives_and_required() {
        assert_eq!(run("${NOPE:-def}").unwrap(), "def");
        assert_eq!(run("${EMPTY:-def}").unwrap(), "def");
        assert_eq!(run("${EMPTY-def}").unwrap(), "");
        assert_eq!(run("${NOPE-def}").unwrap(), "def");
        assert_eq!(run("${TAG:+set}").unwrap(), "set");
        assert_eq!(run("${EMPTY:+set}").unwrap(), "");
        assert_eq!(run("${EMPTY+set}").unwrap(), "set");
        assert_eq!(run("${NOPE:-${TAG}}").unwrap(), "1.2", "nested");
        let err = run("${NOPE:?give NOPE}").unwrap_err();
        assert!(err.contains("NOPE") && err.contains("give NOPE"), "{err}");
        assert!(run("${EMPTY?x}").is_ok());
    }

    #[test]
    fn unset_variables_warn_and_bad_forms_fail() {
        let mut warnings = Vec::new();
        assert_eq!(interpolate("a${NOPE}b", &env, &mut warnings).unwrap(), "ab");
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].contains("\"NOPE\" variable is not set"));
        assert!(run("cost: $5").is_err());
        assert!(run("${TAG").is_err());
        assert!(run("${}").is_err());
        assert!(run("${TAG/x/y}").is_err());
    }
}
