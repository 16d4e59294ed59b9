//! The dependency graph of a project's services (`depends_on`): the order
//! to start them in (dependencies first), and the waves to stop them in
//! (dependents first; services of one wave do not depend on each other, so
//! they stop at the same time, as docker compose does).

use super::model::{ComposeFile, Service};
use super::ComposeError;

/// Every service, dependencies before their dependents, otherwise in file
/// order (Kahn's algorithm). A cycle is an error that names it.
pub fn start_order(model: &ComposeFile) -> Result<Vec<&Service>, ComposeError> {
    let mut done: Vec<&str> = Vec::new();
    let mut order = Vec::new();
    while order.len() < model.services.len() {
        let ready = model.services.iter().find(|s| {
            !done.contains(&s.name.as_str())
                && s.depends_on.iter().all(|d| {
                    done.contains(&d.service.as_str()) || model.service(&d.service).is_none()
                })
        });
        match ready {
            Some(service) => {
                done.push(&service.name);
                order.push(service);
            }
            None => {
                let stuck: Vec<&str> = model
                    .services
                    .iter()
                    .map(|s| s.name.as_str())
                    .filter(|n| !done.contains(n))
                    .collect();
                return Err(ComposeError::Invalid(format!(
                    "dependency cycle between services {}: depends_on must not loop",
                    stuck.join(", ")
                )));
            }
        }
    }
    Ok(order)
}

/// The given services in stop waves: a service stops only after every
/// service (of those given) that depends on it has stopped.
pub fn stop_waves(model: &ComposeFile, names: &[String]) -> Vec<Vec<String>> {
    let depends = |dependent: &str, on: &str| {
        model
            .service(dependent)
            .is_some_and(|s| s.depends_on.iter().any(|d| d.service == on))
    };
    let mut left: Vec<String> = names.to_vec();
    let mut waves = Vec::new();
    while !left.is_empty() {
        let wave: Vec<String> = left
            .iter()
            .filter(|s| !left.iter().any(|other| other != *s && depends(other, s)))
            .cloned()
            .collect();
        // A cycle cannot load, but never loop forever on one.
        let wave = if wave.is_empty() { left.clone() } else { wave };
        left.retain(|s| !wave.contains(s));
        waves.push(wave);
    }
    waves
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compose::model::{Condition, Dependency};

    fn service(name: &str, deps: &[&str]) -> Service {
        Service {
            name: name.into(),
            depends_on: deps
                .iter()
                .map(|d| Dependency {
                    service: d.to_string(),
                    condition: Condition::ServiceStarted,
                    line: 0,
                })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn start_order_and_stop_waves_mirror_each_other() {
        let model = ComposeFile {
            services: vec![
                service("app", &["db", "cache"]),
                service("worker", &["db"]),
                service("db", &[]),
                service("cache", &["db"]),
            ],
            ..Default::default()
        };
        let order: Vec<&str> = start_order(&model)
            .unwrap()
            .iter()
            .map(|s| s.name.as_str())
            .collect();
        assert_eq!(order, vec!["db", "worker", "cache", "app"]);
        let all: Vec<String> = order.iter().map(|s| s.to_string()).collect();
        assert_eq!(
            stop_waves(&model, &all),
            vec![
                vec!["worker".to_string(), "app".into()],
                vec!["cache".into()],
                vec!["db".into()]
            ]
        );
    }

    #[test]
    fn a_cycle_is_named() {
        let model = ComposeFile {
            services: vec![
                service("a", &["b"]),
                service("b", &["a"]),
                service("c", &[]),
            ],
            ..Default::default()
        };
        let err = start_order(&model).unwrap_err().to_string();
        assert!(err.contains("cycle between services a, b"), "{err}");
    }
}
