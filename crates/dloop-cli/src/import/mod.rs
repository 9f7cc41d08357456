//! `dloop import little-loops`: converts little-loops loop files (the format of
//! `fsm/schema.py`) into dloop loops. [`convert`] maps the loop ([`loop_fields`]) and each state
//! ([`state`]); every construct without a dloop equivalent becomes a [`Note`] naming the file,
//! the line and what to do, so nothing is dropped silently.

mod interp;
mod loop_fields;
mod state;

use yaml_rust2::yaml::Hash;
use yaml_rust2::{Yaml, YamlEmitter, YamlLoader};

/// One thing the importer could not map (or mapped only approximately).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Note {
    /// 1-based line in the little-loops file (0 when unknown).
    pub(crate) line: usize,
    /// What was not mapped, and what to do.
    pub(crate) message: String,
}

/// The result of converting one file.
#[derive(Debug)]
pub(crate) struct Conversion {
    /// The loop's name (the output file is `<name>.yaml`).
    pub(crate) name: String,
    /// The dloop loop file.
    pub(crate) yaml: String,
    /// What did not map, by line.
    pub(crate) notes: Vec<Note>,
}

/// Finds the lines of keys in the source, for notes: YAML parsers drop positions, and a key's
/// line is enough to point the user at it.
pub(crate) struct Lines<'a> {
    lines: Vec<&'a str>,
    /// The line given for a key the file does not hold (one inherited with `from:`).
    fallback: usize,
}

impl<'a> Lines<'a> {
    fn new(text: &'a str) -> Lines<'a> {
        let mut lines = Lines {
            lines: text.lines().collect(),
            fallback: 0,
        };
        lines.fallback = lines.top("from");
        lines
    }

    /// The line of top-level `key:`.
    pub(crate) fn top(&self, key: &str) -> usize {
        self.find_from(0, key, Some(0)).unwrap_or(self.fallback)
    }

    /// The line of state `name`'s key (under `states:`).
    pub(crate) fn state(&self, name: &str) -> usize {
        let states = self.top("states");
        self.find_from(states, name, None).unwrap_or(states)
    }

    /// The line of `key:` inside state `name` (the state's own line when absent).
    pub(crate) fn state_key(&self, name: &str, key: &str) -> usize {
        let start = self.state(name);
        let indent = self.indent(start);
        for (i, line) in self.lines.iter().enumerate().skip(start) {
            let trimmed = line.trim_start();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            if line.len() - trimmed.len() <= indent {
                break;
            }
            if key_matches(trimmed, key) {
                return i + 1;
            }
        }
        start
    }

    fn indent(&self, line: usize) -> usize {
        let text = self
            .lines
            .get(line.saturating_sub(1))
            .copied()
            .unwrap_or("");
        text.len() - text.trim_start().len()
    }

    /// The first line at or after `from` (1-based, exclusive) whose key is `key`, optionally at
    /// an exact indent.
    fn find_from(&self, from: usize, key: &str, indent: Option<usize>) -> Option<usize> {
        self.lines
            .iter()
            .enumerate()
            .skip(from)
            .find_map(|(i, line)| {
                let trimmed = line.trim_start();
                let at = line.len() - trimmed.len();
                (indent.is_none_or(|n| n == at) && key_matches(trimmed, key)).then_some(i + 1)
            })
    }
}

fn key_matches(trimmed: &str, key: &str) -> bool {
    let unquoted = trimmed.trim_start_matches(['"', '\'']);
    unquoted
        .strip_prefix(key)
        .is_some_and(|rest| rest.trim_start_matches(['"', '\'']).starts_with(':'))
}

/// Parses one little-loops file into its top-level mapping.
fn parse(text: &str) -> Result<Hash, String> {
    let docs = YamlLoader::load_from_str(text).map_err(|e| format!("not valid YAML: {e}"))?;
    match docs.into_iter().next() {
        Some(Yaml::Hash(src)) => Ok(src),
        _ => Err("not a little-loops loop: the document is not a mapping".to_owned()),
    }
}

/// Resolves `from: PARENT` as little-loops does (the parent deep-merged under the child: maps
/// merge, scalars and lists are replaced), when the parent is a file `PARENT.yaml` (or the
/// path `PARENT`) in `dir`. A parent that cannot be found is left for a note.
fn inherit(mut src: Hash, dir: &std::path::Path, depth: usize) -> Result<Hash, String> {
    let Some(parent) = src.get(&key("from")).and_then(scalar) else {
        return Ok(src);
    };
    // little-loops detects inheritance cycles; a chain this long is one.
    if depth > 16 {
        return Err(format!("`from: {parent}`: the inheritance chain loops"));
    }
    let candidates = [dir.join(format!("{parent}.yaml")), dir.join(&parent)];
    let Some(path) = candidates.iter().find(|p| p.is_file()) else {
        return Ok(src);
    };
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("reading the parent {}: {e}", path.display()))?;
    let base = inherit(parse(&text)?, path.parent().unwrap_or(dir), depth + 1)?;
    src.remove(&key("from"));
    let mut merged = Yaml::Hash(base);
    deep_merge(&mut merged, Yaml::Hash(src));
    match merged {
        Yaml::Hash(hash) => Ok(hash),
        _ => unreachable!("merging into a mapping gives a mapping"),
    }
}

fn deep_merge(base: &mut Yaml, child: Yaml) {
    match (base, child) {
        (Yaml::Hash(base), Yaml::Hash(child)) => {
            for (k, v) in child {
                match base.get_mut(&k) {
                    Some(existing) => deep_merge(existing, v),
                    None => {
                        base.insert(k, v);
                    }
                }
            }
        }
        (base, child) => *base = child,
    }
}

/// Converts the little-loops file `file_name` holding `text`; a `from:` parent is looked for
/// in `dir` (the file's folder).
pub(crate) fn convert(
    file_name: &str,
    text: &str,
    dir: &std::path::Path,
) -> Result<Conversion, String> {
    let src = parse(text)?;
    let inherited = src.contains_key(&key("from"));
    let src = inherit(src, dir, 0)?;
    let lines = Lines::new(text);
    let mut notes = Vec::new();
    if inherited && !src.contains_key(&key("from")) {
        notes.push(Note {
            line: lines.top("from"),
            message: "`from:` was resolved: the parent's fields are merged in (notes about its \
                      fields point at `from:`)"
                .to_owned(),
        });
    }
    let fallback = std::path::Path::new(file_name)
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("imported");
    let mut out = loop_fields::convert(&src, &lines, &mut notes, fallback);
    let name = match out.get(&key("name")) {
        Some(Yaml::String(name)) => name.clone(),
        _ => fallback.to_owned(),
    };
    let defaults = loop_fields::state_defaults(&src);
    let mut states = Hash::new();
    let mut extra_failure = false;
    match src.get(&key("states")) {
        Some(Yaml::Hash(src_states)) => {
            for (state_name, body) in src_states {
                let Some(state_name) = scalar(state_name) else {
                    continue;
                };
                let Yaml::Hash(body) = body else {
                    notes.push(Note {
                        line: lines.state(&state_name),
                        message: format!("state `{state_name}` is not a mapping; it was left out"),
                    });
                    continue;
                };
                let converted = state::convert(
                    &state_name,
                    body,
                    &defaults,
                    src.get(&key("context")),
                    &lines,
                    &mut notes,
                );
                extra_failure |= converted.needs_no_route_state;
                states.insert(key(&state_name), Yaml::Hash(converted.state));
            }
        }
        _ => notes.push(Note {
            line: lines.top("flow"),
            message: "no `states:` mapping (a `flow:` loop?): expand `flow:`/`state_defs:` into \
                      `states:` with little-loops first, then import again"
                .to_owned(),
        }),
    }
    notes.sort_by_key(|n| n.line);
    if extra_failure {
        let mut terminal = Hash::new();
        terminal.insert(key("terminal"), key("failure"));
        states.insert(key(state::NO_ROUTE_STATE), Yaml::Hash(terminal));
    }
    out.insert(key("states"), Yaml::Hash(states));
    let mut yaml = format!(
        "# Imported from the little-loops loop {file_name} by `dloop import little-loops`.\n"
    );
    if !notes.is_empty() {
        yaml.push_str("# Not mapped (see `dloop import little-loops --check`):\n");
        for note in &notes {
            yaml.push_str(&format!("#   line {}: {}\n", note.line, note.message));
        }
    }
    let mut body = String::new();
    let mut emitter = YamlEmitter::new(&mut body);
    emitter.multiline_strings(true);
    emitter
        .dump(&Yaml::Hash(out))
        .map_err(|e| format!("writing YAML: {e}"))?;
    yaml.push_str(body.trim_start_matches("---\n"));
    yaml.push('\n');
    Ok(Conversion { name, yaml, notes })
}

/// A string key.
pub(crate) fn key(text: &str) -> Yaml {
    Yaml::String(text.to_owned())
}

/// A scalar as text (strings, numbers, booleans).
pub(crate) fn scalar(value: &Yaml) -> Option<String> {
    match value {
        Yaml::String(s) | Yaml::Real(s) => Some(s.clone()),
        Yaml::Integer(n) => Some(n.to_string()),
        Yaml::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A duration in seconds (a number) as dloop's `Ns`.
pub(crate) fn seconds(value: &Yaml) -> Option<Yaml> {
    let text = scalar(value)?;
    let n: f64 = text.parse().ok()?;
    Some(Yaml::String(format!("{}s", n.ceil() as u64)))
}
