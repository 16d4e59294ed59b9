//! A small subset of Go's text/template, enough for docker's `--format` and
//! `-f` flags: `{{.Field}}`, `{{.A.B}}` (paths into the JSON object),
//! `{{json .Field}}`, and `\t` / `\n` escapes. Anything else inside `{{ }}` is
//! an error naming the action, never silently ignored.

use serde_json::Value;

/// Render `template` against `data`.
pub fn render(template: &str, data: &Value) -> anyhow::Result<String> {
    let template = template.replace("\\t", "\t").replace("\\n", "\n");
    let mut out = String::new();
    let mut rest = template.as_str();
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find("}}")
            .ok_or_else(|| anyhow::anyhow!("template: unclosed action in {template:?}"))?;
        out.push_str(&action(after[..end].trim(), data)?);
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

fn action(action: &str, data: &Value) -> anyhow::Result<String> {
    let (as_json, path) = match action.strip_prefix("json ") {
        Some(path) => (true, path.trim()),
        None => (false, action),
    };
    let value = lookup(path, data)?;
    Ok(if as_json {
        serde_json::to_string(value)?
    } else {
        plain(value)
    })
}

/// `.` is the whole object, `.A.B` walks into it.
fn lookup<'a>(path: &str, data: &'a Value) -> anyhow::Result<&'a Value> {
    let Some(path) = path.strip_prefix('.') else {
        anyhow::bail!(
            "template: unsupported action {path:?}: use {{{{.Field}}}} or {{{{json .Field}}}}"
        );
    };
    let mut value = data;
    for key in path.split('.').filter(|k| !k.is_empty()) {
        value = value
            .get(key)
            .ok_or_else(|| anyhow::anyhow!("template: can't evaluate field {key}"))?;
    }
    Ok(value)
}

/// How Go prints a value with `{{.X}}`: strings bare, lists as `[a b]`, maps as `map[k:v]`.
fn plain(value: &Value) -> String {
    match value {
        Value::Null => "<nil>".into(),
        Value::String(s) => s.clone(),
        Value::Array(items) => format!(
            "[{}]",
            items.iter().map(plain).collect::<Vec<_>>().join(" ")
        ),
        Value::Object(map) => format!(
            "map[{}]",
            map.iter()
                .map(|(k, v)| format!("{k}:{}", plain(v)))
                .collect::<Vec<_>>()
                .join(" ")
        ),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn fields_paths_and_json_render_as_docker_does() {
        let data = json!({"Id": "abc", "State": {"ExitCode": 3, "Running": false}, "Args": ["-c", "x"], "Labels": {"a": "b"}});
        assert_eq!(render("{{.Id}}", &data).unwrap(), "abc");
        assert_eq!(
            render("{{.State.ExitCode}} {{ .State.Running }}", &data).unwrap(),
            "3 false"
        );
        assert_eq!(render("{{json .Args}}", &data).unwrap(), "[\"-c\",\"x\"]");
        assert_eq!(
            render("{{.Args}}\\t{{.Labels}}", &data).unwrap(),
            "[-c x]\tmap[a:b]"
        );
    }

    #[test]
    fn null_prints_as_go_prints_nil() {
        assert_eq!(
            render("{{.Nothing}}", &json!({"Nothing": null})).unwrap(),
            "<nil>"
        );
    }

    #[test]
    fn unknown_fields_and_actions_are_errors() {
        let data = json!({"Id": "abc"});
        assert!(render("{{.Nope}}", &data).is_err());
        assert!(render("{{range .Id}}", &data).is_err());
        assert!(render("{{.Id", &data).is_err());
    }
}
