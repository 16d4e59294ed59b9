//! A compose file as a tree of YAML nodes that remember their line.
//!
//! yaml-rust2 (a maintained, pure-Rust YAML 1.2 parser) reports the file as
//! a stream of events, each with its position; this module builds the tree
//! from them, so every later error can name the line of the key it is about.
//! Anchors (`&name`), aliases (`*name`) and merge keys (`<<: *name`, used by
//! compose files to share settings between services) are resolved here.
//! Scalars stay text: whether `no` or `8080` is a string or a number is
//! decided by the key that reads it, as compose's schema does.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser, Tag};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// One value of the file.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// 1-based line where the value starts.
    pub line: usize,
    pub kind: Kind,
    /// compose's merge tag on the value, if any (see `merge`).
    pub tag: MergeTag,
}

/// The two YAML tags compose defines, for merging files: `!reset` removes
/// what earlier files set, `!override` replaces it instead of merging.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum MergeTag {
    #[default]
    None,
    Reset,
    Override,
}

impl Node {
    /// An untagged node.
    pub fn new(line: usize, kind: Kind) -> Node {
        Node {
            line,
            kind,
            tag: MergeTag::None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    /// `~`, `null`, or nothing at all (`key:`).
    Null,
    /// Any scalar, as text; `quoted` when it was written in quotes or as a
    /// block (then `true` or `80` are strings, never booleans or numbers).
    Scalar {
        text: String,
        quoted: bool,
    },
    Seq(Vec<Node>),
    /// Keys in file order (merged keys after the explicit ones).
    Map(Vec<(Key, Node)>),
}

/// A mapping key and its line.
#[derive(Debug, Clone, PartialEq)]
pub struct Key {
    pub name: String,
    pub line: usize,
}

impl Node {
    /// A short description of the node's type, for error messages.
    pub fn type_name(&self) -> &'static str {
        match self.kind {
            Kind::Null => "null",
            Kind::Scalar { .. } => "a scalar",
            Kind::Seq(_) => "a list",
            Kind::Map(_) => "a mapping",
        }
    }

    /// The value of `key` in a mapping.
    pub fn get(&self, key: &str) -> Option<&Node> {
        match &self.kind {
            Kind::Map(entries) => entries.iter().find(|(k, _)| k.name == key).map(|(_, v)| v),
            _ => None,
        }
    }
}

/// Parse `text` (the first YAML document) into a tree. An empty file is `Null`.
pub fn parse(text: &str) -> Result<Node, String> {
    let mut builder = Builder::default();
    let mut parser = Parser::new_from_str(text);
    parser.load(&mut builder, false).map_err(|e| {
        let mark = e.marker();
        format!(
            "line {}, column {}: {}",
            mark.line(),
            mark.col() + 1,
            e.info()
        )
    })?;
    if let Some(err) = builder.error {
        return Err(err);
    }
    Ok(builder.root.unwrap_or(Node::new(1, Kind::Null)))
}

/// How many line numbers each file of a project gets: the lines of the n-th
/// file are numbered from n × FILE_STRIDE, so that after merging (see
/// `merge`) one number still says which file and which line a value came
/// from. The first file keeps its own numbers.
const FILE_STRIDE: usize = 1 << 24;

/// The files of a project, in merge order, for messages that name the file
/// and line of a value.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    names: Vec<String>,
}

impl Sources {
    /// A project of one file (its lines unchanged).
    pub fn single(name: &str) -> Sources {
        Sources {
            names: vec![name.to_string()],
        }
    }

    /// Register the next file and renumber its tree's lines as its own.
    pub fn add(&mut self, name: &str, tree: &mut Node) {
        let offset = self.names.len() * FILE_STRIDE;
        self.names.push(name.to_string());
        if offset > 0 {
            shift_lines(tree, offset);
        }
    }

    /// `FILE:LINE` for a line number of a registered tree.
    pub fn at(&self, line: usize) -> String {
        let (index, line) = (line / FILE_STRIDE, line % FILE_STRIDE);
        let name = self.names.get(index).map(String::as_str).unwrap_or("?");
        format!("{name}:{line}")
    }

    /// The files, for a message about all of them (`a.yaml + b.yaml`).
    pub fn names(&self) -> String {
        self.names.join(" + ")
    }
}

fn shift_lines(node: &mut Node, by: usize) {
    node.line += by;
    match &mut node.kind {
        Kind::Seq(items) => items.iter_mut().for_each(|n| shift_lines(n, by)),
        Kind::Map(entries) => {
            for (key, value) in entries {
                key.line += by;
                shift_lines(value, by);
            }
        }
        Kind::Null | Kind::Scalar { .. } => {}
    }
}

/// A collection being read.
enum Open {
    Seq {
        line: usize,
        anchor: usize,
        tag: MergeTag,
        items: Vec<Node>,
    },
    Map {
        line: usize,
        anchor: usize,
        tag: MergeTag,
        entries: Vec<(Key, Node)>,
        merges: Vec<Node>,
        key: Option<Key>,
    },
}

#[derive(Default)]
struct Builder {
    stack: Vec<Open>,
    anchors: HashMap<usize, Node>,
    root: Option<Node>,
    /// The first error; later events are ignored.
    error: Option<String>,
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, event: Event, mark: Marker) {
        if self.error.is_some() {
            return;
        }
        if let Err(err) = self.handle(event, mark.line()) {
            self.error = Some(err);
        }
    }
}

impl Builder {
    fn handle(&mut self, event: Event, line: usize) -> Result<(), String> {
        match event {
            Event::Scalar(text, style, anchor, tag) => {
                let tag = merge_tag(tag.as_ref(), line)?;
                let quoted = style != TScalarStyle::Plain;
                let kind =
                    if !quoted && matches!(text.as_str(), "" | "~" | "null" | "Null" | "NULL") {
                        Kind::Null
                    } else {
                        Kind::Scalar { text, quoted }
                    };
                self.finish(Node { line, kind, tag }, anchor)
            }
            Event::Alias(anchor) => {
                let node = self
                    .anchors
                    .get(&anchor)
                    .cloned()
                    .ok_or_else(|| format!("line {line}: alias to an unknown anchor"))?;
                self.finish(node, 0)
            }
            Event::SequenceStart(anchor, tag) => {
                let tag = merge_tag(tag.as_ref(), line)?;
                self.stack.push(Open::Seq {
                    line,
                    anchor,
                    tag,
                    items: Vec::new(),
                });
                Ok(())
            }
            Event::MappingStart(anchor, tag) => {
                let tag = merge_tag(tag.as_ref(), line)?;
                self.stack.push(Open::Map {
                    line,
                    anchor,
                    tag,
                    entries: Vec::new(),
                    merges: Vec::new(),
                    key: None,
                });
                Ok(())
            }
            Event::SequenceEnd => match self.stack.pop() {
                Some(Open::Seq {
                    line,
                    anchor,
                    tag,
                    items,
                }) => self.finish(
                    Node {
                        line,
                        kind: Kind::Seq(items),
                        tag,
                    },
                    anchor,
                ),
                _ => Err("unbalanced sequence".into()),
            },
            Event::MappingEnd => match self.stack.pop() {
                Some(Open::Map {
                    line,
                    anchor,
                    tag,
                    entries,
                    merges,
                    ..
                }) => {
                    let entries = apply_merges(entries, merges)?;
                    self.finish(
                        Node {
                            line,
                            kind: Kind::Map(entries),
                            tag,
                        },
                        anchor,
                    )
                }
                _ => Err("unbalanced mapping".into()),
            },
            _ => Ok(()),
        }
    }

    /// A complete node: remember its anchor, then hand it to its parent.
    fn finish(&mut self, node: Node, anchor: usize) -> Result<(), String> {
        if anchor > 0 {
            self.anchors.insert(anchor, node.clone());
        }
        match self.stack.last_mut() {
            None => {
                self.root = Some(node);
                Ok(())
            }
            Some(Open::Seq { items, .. }) => {
                items.push(node);
                Ok(())
            }
            Some(Open::Map {
                entries,
                merges,
                key,
                ..
            }) => match key.take() {
                None => {
                    let name = match node.kind {
                        Kind::Scalar { text, .. } => text,
                        Kind::Null => String::new(),
                        _ => {
                            return Err(format!(
                                "line {}: a mapping key must be a plain string, not {}",
                                node.line,
                                node.type_name()
                            ))
                        }
                    };
                    *key = Some(Key {
                        name,
                        line: node.line,
                    });
                    Ok(())
                }
                Some(k) if k.name == "<<" => {
                    merges.push(node);
                    Ok(())
                }
                Some(k) => {
                    if entries.iter().any(|(e, _)| e.name == k.name) {
                        return Err(format!(
                            "line {}: duplicate key {:?} (a key may appear once per mapping)",
                            k.line, k.name
                        ));
                    }
                    entries.push((k, node));
                    Ok(())
                }
            },
        }
    }
}

/// `<<: *base` or `<<: [*a, *b]`: the merged mappings' keys that the mapping
/// does not set itself (earlier merges win over later ones, as YAML says).
fn apply_merges(
    mut entries: Vec<(Key, Node)>,
    merges: Vec<Node>,
) -> Result<Vec<(Key, Node)>, String> {
    let mut sources = Vec::new();
    for merge in merges {
        match merge.kind {
            Kind::Map(_) => sources.push(merge),
            Kind::Seq(items) => sources.extend(items),
            _ => {
                return Err(format!(
                    "line {}: a merge key (<<) takes a mapping or a list of mappings",
                    merge.line
                ))
            }
        }
    }
    for source in sources {
        let Kind::Map(more) = source.kind else {
            return Err(format!(
                "line {}: a merge key (<<) takes a mapping or a list of mappings",
                source.line
            ));
        };
        for (key, value) in more {
            if !entries.iter().any(|(k, _)| k.name == key.name) {
                entries.push((key, value));
            }
        }
    }
    Ok(entries)
}

/// The standard `!!str`-style tags are fine; compose's own (`!reset`,
/// `!override`) and any other local tag are not supported.
/// compose's `!reset` and `!override`; any other local tag is refused.
fn merge_tag(tag: Option<&Tag>, line: usize) -> Result<MergeTag, String> {
    match tag {
        Some(tag) if tag.handle == "!" => match tag.suffix.as_str() {
            "reset" => Ok(MergeTag::Reset),
            "override" => Ok(MergeTag::Override),
            other => Err(format!(
                "line {line}: the YAML tag !{other} is not supported by berth compose (only !reset and !override are)"
            )),
        },
        _ => Ok(MergeTag::None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(node: &Node) -> &str {
        match &node.kind {
            Kind::Scalar { text, .. } => text,
            other => panic!("not a scalar: {other:?}"),
        }
    }

    #[test]
    fn nodes_remember_their_lines() {
        let root =
            parse("services:\n  web:\n    image: busybox\n    ports:\n      - 80\n").unwrap();
        let web = root.get("services").unwrap().get("web").unwrap();
        assert_eq!(web.line, 3);
        let image = web.get("image").unwrap();
        assert_eq!((text(image), image.line), ("busybox", 3));
        let Kind::Map(entries) = &web.kind else {
            panic!()
        };
        assert_eq!(entries[1].0.line, 4, "the ports key's line");
    }

    #[test]
    fn anchors_aliases_and_merge_keys_resolve() {
        let root = parse(
            "x-base: &base\n  image: busybox\n  restart: always\nservices:\n  a:\n    <<: *base\n    restart: \"no\"\n  b: *base\n",
        )
        .unwrap();
        let a = root.get("services").unwrap().get("a").unwrap();
        assert_eq!(text(a.get("image").unwrap()), "busybox");
        assert_eq!(text(a.get("restart").unwrap()), "no", "explicit keys win");
        let b = root.get("services").unwrap().get("b").unwrap();
        assert_eq!(text(b.get("restart").unwrap()), "always");
    }

    #[test]
    fn quoting_nulls_and_duplicates() {
        let root = parse("a:\nb: ~\nc: 'null'\nd: \"80\"\n").unwrap();
        assert_eq!(root.get("a").unwrap().kind, Kind::Null);
        assert_eq!(root.get("b").unwrap().kind, Kind::Null);
        assert!(matches!(
            root.get("c").unwrap().kind,
            Kind::Scalar { quoted: true, .. }
        ));
        let err = parse("a: 1\nb: 2\na: 3\n").unwrap_err();
        assert!(
            err.contains("line 3") && err.contains("duplicate key \"a\""),
            "{err}"
        );
    }

    #[test]
    fn syntax_errors_name_the_line() {
        let err = parse("services:\n  web:\n    image: [unclosed\n").unwrap_err();
        assert!(err.starts_with("line "), "{err}");
        let err = parse("a: 1\nb: !secret x\n").unwrap_err();
        assert!(
            err.starts_with("line 2") && err.contains("!secret is not supported"),
            "{err}"
        );
        assert_eq!(
            parse("a: !reset []\n").unwrap().get("a").unwrap().tag,
            MergeTag::Reset
        );
        assert_eq!(
            parse("a: !override x\n").unwrap().get("a").unwrap().tag,
            MergeTag::Override
        );
        assert_eq!(parse("").unwrap().kind, Kind::Null);
    }
}
