//! Several compose files as one (`-f compose.yaml -f prod.yaml`, or
//! `compose.yaml` with its `compose.override.yaml`): the Compose
//! specification's merge rules, applied to the YAML trees before they are
//! decoded, so that every value keeps the file and line it came from (see
//! [`super::yaml::Sources`]).
//!
//! - A mapping merges key by key: a key of the later file adds to or
//!   replaces the earlier one's (an empty value, `key:`, keeps the earlier).
//! - A sequence gets the later file's items appended.
//! - Exceptions, as the specification lists them:
//!   - `command`, `entrypoint` and `healthcheck.test` are replaced whole;
//!   - `ports` and `volumes` are unique by a key (a port by host address,
//!     published port, target port and protocol; a volume by its target):
//!     a later entry with the same key replaces the earlier one in place;
//!   - lists that are mappings in another form — `KEY=VALUE` lists
//!     (`environment`, `labels`, `build.args`, `sysctls`) and the
//!     list-or-mapping `depends_on` and service `networks` — merge as
//!     mappings, whichever form each file wrote them in.
//! - A value whose type changes (a string `build: ./dir` against a mapping)
//!   is replaced by the later one.
//! - compose's tags: a value tagged `!override` replaces the earlier one
//!   without merging; one tagged `!reset` removes it (whatever the tagged
//!   value is). [`strip_tags`] then takes the reset entries out of the
//!   merged tree, and out of a single file's.

use super::yaml::{Key, Kind, MergeTag, Node};

/// The later tree `over` merged into `base`.
pub fn merge(base: Node, over: Node) -> Node {
    merge_at(base, over, &[])
}

/// Remove what `!reset` cleared and forget the tags: the tree as decoded.
pub fn strip_tags(node: &mut Node) {
    node.tag = MergeTag::None;
    match &mut node.kind {
        Kind::Map(entries) => {
            entries.retain(|(_, v)| v.tag != MergeTag::Reset);
            entries.iter_mut().for_each(|(_, v)| strip_tags(v));
        }
        Kind::Seq(items) => {
            items.retain(|v| v.tag != MergeTag::Reset);
            items.iter_mut().for_each(strip_tags);
        }
        Kind::Null | Kind::Scalar { .. } => {}
    }
}

fn merge_at(base: Node, over: Node, path: &[&str]) -> Node {
    match over.tag {
        MergeTag::Reset | MergeTag::Override => return over,
        MergeTag::None => {}
    }
    if matches!(over.kind, Kind::Null) {
        return base;
    }
    match rule_for(path) {
        Rule::Replace => over,
        Rule::UniqueBy(key_of) => merge_unique(base, over, key_of),
        Rule::AsMapping(to_entry) => {
            merge_maps(as_mapping(base, to_entry), as_mapping(over, to_entry), path)
        }
        Rule::Default => match (&base.kind, &over.kind) {
            (Kind::Map(_), Kind::Map(_)) => merge_maps(base, over, path),
            (Kind::Seq(_), Kind::Seq(_)) => merge_unique(base, over, |_| None),
            _ => over,
        },
    }
}

/// How the value at `path` (keys from the top) merges.
enum Rule {
    Default,
    Replace,
    UniqueBy(fn(&Node) -> Option<String>),
    AsMapping(fn(Node) -> (Key, Node)),
}

fn rule_for(path: &[&str]) -> Rule {
    match path {
        ["services", _, "command" | "entrypoint"] => Rule::Replace,
        ["services", _, "healthcheck", "test"] => Rule::Replace,
        ["services", _, "ports"] => Rule::UniqueBy(port_key),
        ["services", _, "volumes"] => Rule::UniqueBy(volume_target),
        ["services", _, "environment" | "labels" | "sysctls"] => Rule::AsMapping(key_value_entry),
        ["services", _, "build", "args"] => Rule::AsMapping(key_value_entry),
        ["services", _, "depends_on" | "networks"] => Rule::AsMapping(name_entry),
        _ => Rule::Default,
    }
}

/// Both mappings merged key by key (file order: the earlier's keys first).
fn merge_maps(base: Node, over: Node, path: &[&str]) -> Node {
    let (Kind::Map(mut entries), Kind::Map(later)) = (base.kind, over.kind) else {
        unreachable!("merge_maps is given mappings")
    };
    for (key, value) in later {
        match entries.iter().position(|(k, _)| k.name == key.name) {
            Some(i) => {
                let earlier = entries.remove(i).1;
                let mut child: Vec<&str> = path.to_vec();
                child.push(&key.name);
                let merged = merge_at(earlier, value, &child);
                entries.insert(i, (key, merged));
            }
            None => entries.push((key, value)),
        }
    }
    Node::new(base.line, Kind::Map(entries))
}

/// A sequence whose items are unique by `key_of`: a later item with an
/// existing key takes that item's place; others are appended (all of them
/// when nothing has a key). Anything but two sequences: the later wins.
fn merge_unique(base: Node, over: Node, key_of: fn(&Node) -> Option<String>) -> Node {
    if !matches!((&base.kind, &over.kind), (Kind::Seq(_), Kind::Seq(_))) {
        return over;
    }
    let (Kind::Seq(mut items), Kind::Seq(later)) = (base.kind, over.kind) else {
        unreachable!("checked above")
    };
    for item in later {
        let key = key_of(&item);
        match key.and_then(|k| {
            items
                .iter()
                .position(|i| key_of(i).as_deref() == Some(k.as_str()))
        }) {
            Some(i) => items[i] = item,
            None => items.push(item),
        }
    }
    Node::new(base.line, Kind::Seq(items))
}

/// A `KEY=VALUE` list or a mapping, as a mapping.
fn as_mapping(node: Node, to_entry: fn(Node) -> (Key, Node)) -> Node {
    match node.kind {
        Kind::Seq(items) => Node::new(
            node.line,
            Kind::Map(items.into_iter().map(to_entry).collect()),
        ),
        Kind::Map(_) => node,
        _ => Node::new(node.line, Kind::Map(Vec::new())),
    }
}

/// `KEY=VALUE` as `KEY: VALUE`; `KEY` alone as `KEY:` (no value).
fn key_value_entry(item: Node) -> (Key, Node) {
    let line = item.line;
    let text = scalar(&item).unwrap_or_default();
    let (name, kind) = match text.split_once('=') {
        Some((k, v)) => (
            k.to_string(),
            Kind::Scalar {
                text: v.to_string(),
                quoted: true,
            },
        ),
        None => (text, Kind::Null),
    };
    (Key { name, line }, Node::new(line, kind))
}

/// A name in a list (`depends_on: [db]`) as `db:` with no settings.
fn name_entry(item: Node) -> (Key, Node) {
    let line = item.line;
    let name = scalar(&item).unwrap_or_default();
    (Key { name, line }, Node::new(line, Kind::Null))
}

fn scalar(node: &Node) -> Option<String> {
    match &node.kind {
        Kind::Scalar { text, .. } => Some(text.clone()),
        _ => None,
    }
}

/// A port's unique key: host address, published port, target port and
/// protocol, from `[IP:][PUBLISHED:]TARGET[/PROTO]` or the long syntax.
fn port_key(node: &Node) -> Option<String> {
    let (ip, published, target, protocol) = match &node.kind {
        Kind::Scalar { text, .. } => {
            let (ports, protocol) = text.split_once('/').unwrap_or((text, "tcp"));
            let mut parts: Vec<&str> = ports.rsplitn(3, ':').collect();
            parts.reverse();
            match parts.as_slice() {
                [target] => (
                    String::new(),
                    String::new(),
                    target.to_string(),
                    protocol.to_string(),
                ),
                [published, target] => (
                    String::new(),
                    published.to_string(),
                    target.to_string(),
                    protocol.to_string(),
                ),
                [ip, published, target] => (
                    ip.to_string(),
                    published.to_string(),
                    target.to_string(),
                    protocol.to_string(),
                ),
                _ => return None,
            }
        }
        Kind::Map(_) => {
            let field = |name: &str| node.get(name).and_then(scalar).unwrap_or_default();
            let protocol = Some(field("protocol"))
                .filter(|p| !p.is_empty())
                .unwrap_or_else(|| "tcp".into());
            (
                field("host_ip"),
                field("published"),
                field("target"),
                protocol,
            )
        }
        _ => return None,
    };
    Some(format!("{ip}|{published}|{target}|{protocol}"))
}

/// A volume's target, from `SOURCE:TARGET[:MODE]`, `TARGET` or `target:`.
fn volume_target(node: &Node) -> Option<String> {
    match &node.kind {
        Kind::Scalar { text, .. } => {
            let parts: Vec<&str> = text.split(':').collect();
            Some(match parts.as_slice() {
                [target] => target.to_string(),
                [_, target, ..] => target.to_string(),
                [] => return None,
            })
        }
        Kind::Map(_) => node.get("target").and_then(scalar),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compose::yaml;

    fn merged(base: &str, over: &str) -> Node {
        merge(yaml::parse(base).unwrap(), yaml::parse(over).unwrap())
    }

    /// The tree as `key: value` lines, for comparing.
    fn flat(node: &Node, prefix: &str, out: &mut Vec<String>) {
        match &node.kind {
            Kind::Null => out.push(format!("{prefix}: ~")),
            Kind::Scalar { text, .. } => out.push(format!("{prefix}: {text}")),
            Kind::Seq(items) => {
                for (i, item) in items.iter().enumerate() {
                    flat(item, &format!("{prefix}[{i}]"), out);
                }
            }
            Kind::Map(entries) => {
                for (k, v) in entries {
                    let p = if prefix.is_empty() {
                        k.name.clone()
                    } else {
                        format!("{prefix}.{}", k.name)
                    };
                    flat(v, &p, out);
                }
            }
        }
    }

    fn lines(node: &Node) -> Vec<String> {
        let mut out = Vec::new();
        flat(node, "", &mut out);
        out
    }

    #[test]
    fn mappings_merge_and_the_later_scalar_wins() {
        let n = merged(
            "services:\n  web:\n    image: a\n    user: app\n",
            "services:\n  web:\n    image: b\n    working_dir: /srv\n  db:\n    image: pg\n",
        );
        assert_eq!(
            lines(&n),
            [
                "services.web.image: b",
                "services.web.user: app",
                "services.web.working_dir: /srv",
                "services.db.image: pg"
            ]
        );
    }

    #[test]
    fn sequences_append_but_commands_are_replaced() {
        let n = merged(
            "services:\n  web:\n    dns: [1.1.1.1]\n    command: [echo, foo]\n    healthcheck:\n      test: [CMD, a]\n      interval: 5s\n",
            "services:\n  web:\n    dns: [8.8.8.8]\n    command: [echo, bar]\n    healthcheck:\n      test: [CMD, b]\n",
        );
        assert_eq!(
            lines(&n),
            [
                "services.web.dns[0]: 1.1.1.1",
                "services.web.dns[1]: 8.8.8.8",
                "services.web.command[0]: echo",
                "services.web.command[1]: bar",
                "services.web.healthcheck.test[0]: CMD",
                "services.web.healthcheck.test[1]: b",
                "services.web.healthcheck.interval: 5s"
            ]
        );
    }

    #[test]
    fn ports_and_volumes_are_unique_by_their_key() {
        let n = merged(
            "services:\n  web:\n    ports: [\"8080:80\", \"127.0.0.1:9000:9000/udp\"]\n    volumes: [\"foo:/work\", \"/cache\"]\n",
            "services:\n  web:\n    ports:\n      - \"8080:80\"\n      - target: 9000\n        published: \"9000\"\n        host_ip: 127.0.0.1\n        protocol: udp\n      - \"8443:443\"\n    volumes: [\"bar:/work:ro\", \"./src:/src\"]\n",
        );
        assert_eq!(
            lines(&n),
            [
                "services.web.ports[0]: 8080:80",
                "services.web.ports[1].target: 9000",
                "services.web.ports[1].published: 9000",
                "services.web.ports[1].host_ip: 127.0.0.1",
                "services.web.ports[1].protocol: udp",
                "services.web.ports[2]: 8443:443",
                "services.web.volumes[0]: bar:/work:ro",
                "services.web.volumes[1]: /cache",
                "services.web.volumes[2]: ./src:/src"
            ]
        );
    }

    #[test]
    fn key_value_lists_and_mappings_merge_by_key_in_either_form() {
        let n = merged(
            "services:\n  web:\n    environment: [A=1, B=2, C]\n    depends_on: [db]\n    networks: [front]\n",
            "services:\n  web:\n    environment:\n      B: 3\n      D: 4\n    depends_on:\n      cache:\n        condition: service_healthy\n    networks: [back]\n",
        );
        assert_eq!(
            lines(&n),
            [
                "services.web.environment.A: 1",
                "services.web.environment.B: 3",
                "services.web.environment.C: ~",
                "services.web.environment.D: 4",
                "services.web.depends_on.db: ~",
                "services.web.depends_on.cache.condition: service_healthy",
                "services.web.networks.front: ~",
                "services.web.networks.back: ~"
            ]
        );
    }

    #[test]
    fn reset_removes_and_override_replaces_without_merging() {
        let mut n = merged(
            "services:\n  app:\n    image: myapp\n    ports: [\"8080:80\"]\n    environment:\n      FOO: BAR\n      KEEP: 1\n    dns: [1.1.1.1]\n",
            "services:\n  app:\n    ports: !reset []\n    environment:\n      FOO: !reset null\n    dns: !override [8.8.8.8]\n",
        );
        strip_tags(&mut n);
        assert_eq!(
            lines(&n),
            [
                "services.app.image: myapp",
                "services.app.environment.KEEP: 1",
                "services.app.dns[0]: 8.8.8.8"
            ]
        );
    }

    #[test]
    fn an_empty_later_value_keeps_the_earlier_and_a_new_type_replaces_it() {
        let n = merged(
            "services:\n  web:\n    build: ./app\nvolumes:\n  data:\n    driver: local\n",
            "services:\n  web:\n    build:\n      context: ./other\nvolumes:\n  data:\n",
        );
        assert_eq!(
            lines(&n),
            [
                "services.web.build.context: ./other",
                "volumes.data.driver: local"
            ]
        );
    }
}
