//! Run edges of the real binary that need no stop or resume: hostile agent output that must
//! never become shell syntax, output of many megabytes, and runs started in the same second.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::common::{Output, TestProject, verified_log};

fn file_size(path: &Path) -> u64 {
    std::fs::metadata(path).expect("metadata").len()
}

#[test]
fn hostile_agent_output_is_never_shell_syntax() {
    let project = TestProject::new();
    project.write_loop(
        "hostile",
        r#"name: hostile
initial: agent
states:
  agent:
    shell: |
      printf '%s\n' '$(touch pwned1)' '`touch pwned2`' '; touch pwned3; rm -rf nothing' "it's" '"; touch pwned4; "' '${HOME}'
    capture: said
    next: use
  use:
    shell: |
      echo ${captured.said.output} > echoed.txt
      printf '%s' ${captured.said.output} > printed.txt
      for word in ${captured.said.output} ${captured.said.output:default=x}; do echo "$word"; done > looped.txt
    next: done
  done:
    terminal: success
"#,
    );
    let out = project.dloop(&["run", "hostile", "--json"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    for entry in walk(project.root()) {
        let name = entry
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        assert!(
            !name.starts_with("pwned"),
            "{} was created",
            entry.display()
        );
    }
    let printed = project.read("printed.txt");
    for piece in [
        "$(touch pwned1)",
        "`touch pwned2`",
        "; touch pwned3",
        "it's",
        "${HOME}",
    ] {
        assert!(printed.contains(piece), "{piece} missing from {printed:?}");
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut all = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read_dir") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            all.extend(walk(&path));
        }
        all.push(path);
    }
    all
}

#[test]
fn ten_megabyte_output_does_not_deadlock_or_bloat_the_log() {
    let project = TestProject::new();
    project.write_loop(
        "loud",
        r#"name: loud
initial: shout
states:
  shout:
    shell: |
      (head -c 10485760 /dev/zero | tr '\0' o) &
      (head -c 10485760 /dev/zero | tr '\0' e >&2) &
      wait
    next: done
  done:
    terminal: success
"#,
    );
    let out = project.dloop(&["run", "loud", "--json"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let (_, dir) = project.only_run();
    let log_size = file_size(&dir.join("events.jsonl"));
    assert!(log_size < 64 * 1024, "events.jsonl is {log_size} bytes");
    let records = verified_log(&dir);
    let finished = records
        .iter()
        .find(|r| r["type"] == "action_finished")
        .expect("action_finished");
    assert_eq!(finished["bytes"], 20 * 1024 * 1024);
    assert_eq!(finished["complete"], false);
    let output = dir.join(finished["output_path"].as_str().expect("output_path"));
    assert_eq!(file_size(&output), 20 * 1024 * 1024);
    let bytes = std::fs::read(&output).expect("output");
    assert_eq!(
        bytes.iter().filter(|b| **b == b'o').count(),
        10 * 1024 * 1024
    );
    assert_eq!(
        bytes.iter().filter(|b| **b == b'e').count(),
        10 * 1024 * 1024
    );
}

#[test]
fn runs_started_in_the_same_second_never_share_files() {
    let project = TestProject::new();
    project.write_loop(
        "quick",
        "name: quick\ninitial: a\nstates:\n  a:\n    shell: echo $DLOOP_RUN_ID > \"$DLOOP_RUN_DIR/me\"\n    next: done\n  done:\n    terminal: success\n",
    );
    let children: Vec<_> = (0..4)
        .map(|_| project.spawn(&["run", "quick", "--json"], &[]))
        .collect();
    let outs: Vec<Output> = children
        .into_iter()
        .map(|c| project.wait(c, Duration::from_secs(20)))
        .collect();
    let mut ids = Vec::new();
    for out in &outs {
        assert_eq!(out.code, 0, "{}", out.stderr);
        ids.push(out.json()["id"].as_str().expect("id").to_owned());
    }
    let dirs = project.run_dirs();
    assert_eq!(dirs.len(), 4, "{dirs:?}");
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 4, "{ids:?}");
    for dir in &dirs {
        let id = dir
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        let records = verified_log(dir);
        assert_eq!(records[0]["run_id"], id.as_str());
        assert_eq!(
            std::fs::read_to_string(dir.join("work/me"))
                .expect("me")
                .trim(),
            id
        );
    }
}
