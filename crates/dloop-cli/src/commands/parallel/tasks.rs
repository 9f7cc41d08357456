//! The tasks file of `dloop parallel`: YAML, JSON or JSON Lines, a list of objects each with an
//! `id`; every other field becomes a context value of that task's run (scalars as text, lists
//! and maps as JSON). A JSON or YAML file may also be an object with a `tasks:` list.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;
use yaml_rust2::{Yaml, YamlLoader};

use crate::error::CliError;

/// One task: its id and its context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Task {
    pub(crate) id: String,
    pub(crate) context: BTreeMap<String, String>,
}

/// Reads the tasks of `path`; the format is chosen by extension (`.json`, `.jsonl`, else YAML).
pub(crate) fn read(path: &Path) -> Result<Vec<Task>, CliError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| CliError::io(format!("reading {}", path.display()), e))?;
    let bad = |message: String| {
        CliError::usage(format!("{}: {message}", path.display())).with_hint(
            "a task is an object with an `id`, e.g. {\"id\": \"a\", \"file\": \"a.txt\"}",
        )
    };
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    let items: Vec<Value> = match ext {
        "jsonl" | "ndjson" => text
            .lines()
            .enumerate()
            .filter(|(_, line)| !line.trim().is_empty())
            .map(|(n, line)| {
                serde_json::from_str(line).map_err(|e| bad(format!("line {}: {e}", n + 1)))
            })
            .collect::<Result<_, _>>()?,
        "json" => {
            list(serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?).map_err(bad)?
        }
        _ => {
            let docs = YamlLoader::load_from_str(&text).map_err(|e| bad(e.to_string()))?;
            list(docs.first().map_or(Value::Null, yaml_to_json)).map_err(bad)?
        }
    };
    let mut tasks = Vec::with_capacity(items.len());
    for (n, item) in items.into_iter().enumerate() {
        let Value::Object(fields) = item else {
            return Err(bad(format!("task {} is not an object", n + 1)));
        };
        let mut context = BTreeMap::new();
        let mut id = None;
        for (key, value) in fields {
            let text = match value {
                Value::String(s) => s,
                Value::Null => String::new(),
                other @ (Value::Bool(_) | Value::Number(_)) => other.to_string(),
                other => other.to_string(),
            };
            if key == "id" {
                id = Some(text);
            } else {
                context.insert(key, text);
            }
        }
        let Some(id) = id.filter(|id| valid_id(id)) else {
            return Err(bad(format!(
                "task {} has no `id`, or one that is not letters, digits, `_`, `-` and `.`",
                n + 1
            )));
        };
        if tasks.iter().any(|t: &Task| t.id == id) {
            return Err(bad(format!("two tasks have the id `{id}`")));
        }
        tasks.push(Task { id, context });
    }
    if tasks.is_empty() {
        return Err(bad("no tasks".into()));
    }
    Ok(tasks)
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 100
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

fn list(value: Value) -> Result<Vec<Value>, String> {
    match value {
        Value::Array(items) => Ok(items),
        Value::Object(mut map) => match map.remove("tasks") {
            Some(Value::Array(items)) => Ok(items),
            _ => Err("expected a list of tasks, or an object with a `tasks:` list".into()),
        },
        _ => Err("expected a list of tasks".into()),
    }
}

fn yaml_to_json(yaml: &Yaml) -> Value {
    match yaml {
        Yaml::Real(s) | Yaml::String(s) => Value::String(s.clone()),
        Yaml::Integer(i) => Value::from(*i),
        Yaml::Boolean(b) => Value::Bool(*b),
        Yaml::Array(items) => Value::Array(items.iter().map(yaml_to_json).collect()),
        Yaml::Hash(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let key = match k {
                        Yaml::String(s) | Yaml::Real(s) => s.clone(),
                        Yaml::Integer(i) => i.to_string(),
                        Yaml::Boolean(b) => b.to_string(),
                        _ => String::new(),
                    };
                    (key, yaml_to_json(v))
                })
                .collect(),
        ),
        _ => Value::Null,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(name: &str, text: &str) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    #[test]
    fn the_three_formats_give_the_same_tasks() {
        let yaml = write(
            "t.yaml",
            "- id: a\n  file: a.txt\n  n: 2\n- id: b\n  file: b.txt\n",
        );
        let json = write(
            "t.json",
            r#"{"tasks": [{"id": "a", "file": "a.txt", "n": 2}, {"id": "b", "file": "b.txt"}]}"#,
        );
        let jsonl = write(
            "t.jsonl",
            "{\"id\": \"a\", \"file\": \"a.txt\", \"n\": 2}\n\n{\"id\": \"b\", \"file\": \"b.txt\"}\n",
        );
        let tasks = read(&yaml.1).unwrap();
        assert_eq!(tasks.len(), 2);
        assert_eq!(tasks[0].id, "a");
        assert_eq!(tasks[0].context["file"], "a.txt");
        assert_eq!(tasks[0].context["n"], "2");
        assert_eq!(read(&json.1).unwrap(), tasks);
        assert_eq!(read(&jsonl.1).unwrap(), tasks);
    }

    #[test]
    fn missing_or_duplicate_ids_are_refused() {
        let none = write("t.yaml", "- file: a.txt\n");
        assert!(read(&none.1).is_err());
        let twice = write("t.jsonl", "{\"id\": \"a\"}\n{\"id\": \"a\"}\n");
        assert!(read(&twice.1).is_err());
        let slash = write("t.jsonl", "{\"id\": \"../x\"}\n");
        assert!(read(&slash.1).is_err());
    }
}
