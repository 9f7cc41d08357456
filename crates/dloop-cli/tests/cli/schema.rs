//! `dloop schema`: the schema accepts every example file and rejects a broken one.

use std::fs;

use serde_json::Value;
use yaml_rust2::{Yaml, YamlLoader};

use crate::common::{TestProject, example_files};

/// A YAML document as JSON (keys as strings, as a YAML language server sees them).
fn to_json(yaml: &Yaml) -> Value {
    match yaml {
        Yaml::Real(text) => text
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map_or(Value::String(text.clone()), Value::Number),
        Yaml::Integer(n) => Value::from(*n),
        Yaml::String(s) => Value::String(s.clone()),
        Yaml::Boolean(b) => Value::Bool(*b),
        Yaml::Array(items) => Value::Array(items.iter().map(to_json).collect()),
        Yaml::Hash(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let key = match k {
                        Yaml::String(s) | Yaml::Real(s) => s.clone(),
                        Yaml::Integer(n) => n.to_string(),
                        Yaml::Boolean(b) => b.to_string(),
                        other => format!("{other:?}"),
                    };
                    (key, to_json(v))
                })
                .collect(),
        ),
        Yaml::Null | Yaml::BadValue | Yaml::Alias(_) => Value::Null,
    }
}

fn yaml_file_as_json(text: &str) -> Value {
    let docs = YamlLoader::load_from_str(text).expect("valid YAML");
    to_json(&docs[0])
}

/// Compiles the schema `dloop schema` prints; returns a checker of JSON values.
fn compiled_schema() -> impl Fn(&Value) -> Result<(), String> {
    let out = TestProject::new().dloop(&["schema"]);
    assert_eq!(out.code, 0, "{}", out.render());
    let schema = out.json();
    assert_eq!(schema["title"], "dloop loop file");
    let mut schemas = boon::Schemas::new();
    let mut compiler = boon::Compiler::new();
    compiler
        .add_resource("dloop.schema.json", schema)
        .expect("add schema");
    let index = compiler
        .compile("dloop.schema.json", &mut schemas)
        .expect("schema compiles");
    move |value: &Value| schemas.validate(value, index).map_err(|e| format!("{e:#}"))
}

#[test]
fn schema_accepts_every_example() {
    let check = compiled_schema();
    for file in example_files() {
        let json = yaml_file_as_json(&fs::read_to_string(&file).expect("read"));
        if let Err(e) = check(&json) {
            panic!("{} does not match the schema: {e}", file.display());
        }
    }
}

#[test]
fn schema_rejects_unknown_fields_and_bad_types() {
    let check = compiled_schema();
    let cases = [
        "initial: a\nstates:\n  a:\n    terminal: success\n    on_sucess: { success: a }\n",
        "initial: a\nlimits:\n  max_steps: 0\nstates:\n  a:\n    terminal: success\n",
        "initial: a\nstates:\n  a:\n    terminal: maybe\n",
    ];
    for case in cases {
        assert!(
            check(&yaml_file_as_json(case)).is_err(),
            "accepted:\n{case}"
        );
    }
}

/// A reader that leaves early (`dloop schema | head -1`) is not an error.
#[test]
fn closed_stdout_exits_quietly() {
    use std::io::Read as _;
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("dloop"))
        .arg("schema")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    drop(child.stdout.take());
    let status = child.wait().expect("wait");
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut stderr)
        .expect("read");
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(stderr.is_empty(), "{stderr}");
}
