//! `docker image inspect`'s JSON shape for a stored image (also what
//! `berth inspect IMAGE` prints).

use serde_json::{json, Map, Value};

use super::config::ContainerConfig;
use super::store::Image;

/// The object docker prints for one image in `docker image inspect`.
pub fn docker_inspect(image: &Image) -> Value {
    let config = &image.config;
    let lower_dirs: Vec<String> = image
        .layer_dirs()
        .iter()
        .rev()
        .map(|d| d.display().to_string())
        .collect();
    json!({
        "Id": image.id.as_str(),
        "RepoTags": image.repo_tags,
        "RepoDigests": image.repo_digests,
        "Parent": "",
        "Comment": config.extra.get("comment").cloned().unwrap_or(json!("")),
        "Created": config.created.clone().unwrap_or_default(),
        "DockerVersion": config.extra.get("docker_version").cloned().unwrap_or(json!("")),
        "Author": config.author.clone().unwrap_or_default(),
        "Config": docker_config(&config.config),
        "Architecture": config.architecture,
        "Variant": config.variant,
        "Os": config.os,
        "Size": image.size(),
        "GraphDriver": {
            "Name": "overlay",
            "Data": { "LowerDir": lower_dirs.join(":") },
        },
        "RootFS": {
            "Type": "layers",
            "Layers": image.diff_ids(),
        },
        "Metadata": { "LastTagTime": image.loaded },
    })
}

/// The image's `config` with every key docker shows, `null` where unset.
pub fn docker_config(config: &ContainerConfig) -> Value {
    let mut object = Map::new();
    let defaults = [
        ("Hostname", json!("")),
        ("Domainname", json!("")),
        ("AttachStdin", json!(false)),
        ("AttachStdout", json!(false)),
        ("AttachStderr", json!(false)),
        ("Tty", json!(false)),
        ("OpenStdin", json!(false)),
        ("StdinOnce", json!(false)),
        ("Image", json!("")),
    ];
    for (key, value) in defaults {
        object.insert(
            key.to_string(),
            config.extra.get(key).cloned().unwrap_or(value),
        );
    }
    for (key, value) in &config.extra {
        object.entry(key.clone()).or_insert(value.clone());
    }
    let or_null = |empty: bool, value: Value| if empty { Value::Null } else { value };
    object.insert("User".into(), json!(config.user));
    object.insert(
        "ExposedPorts".into(),
        or_null(config.exposed_ports.is_empty(), json!(config.exposed_ports)),
    );
    object.insert(
        "Env".into(),
        or_null(config.env.is_empty(), json!(config.env)),
    );
    object.insert("Cmd".into(), json!(config.cmd));
    object.insert(
        "Volumes".into(),
        or_null(config.volumes.is_empty(), json!(config.volumes)),
    );
    object.insert("WorkingDir".into(), json!(config.working_dir));
    object.insert("Entrypoint".into(), json!(config.entrypoint));
    object.insert("OnBuild".into(), json!(config.on_build));
    object.insert(
        "Labels".into(),
        or_null(config.labels.is_empty(), json!(config.labels)),
    );
    if !config.stop_signal.is_empty() {
        object.insert("StopSignal".into(), json!(config.stop_signal));
    }
    if let Some(healthcheck) = &config.healthcheck {
        object.insert("Healthcheck".into(), healthcheck.clone());
    }
    if let Some(shell) = &config.shell {
        object.insert("Shell".into(), json!(shell));
    }
    if let Some(escaped) = config.args_escaped {
        object.insert("ArgsEscaped".into(), json!(escaped));
    }
    Value::Object(object)
}
