//! Issue 12: the store is picked by `--store`, `DLOOP_STORE` or `store:` in config.yaml, and
//! every command works the same on the PostgreSQL store (a real server; see workers.rs).

use dloop_store_pg::testing::TestServer;

use crate::common::TestProject;

const TWO: &str = "\
name: two
initial: a
states:
  a:
    shell: echo one
    next: b
  b:
    shell: echo two
    next: done
  done:
    terminal: success
";

#[test]
fn run_status_inspect_logs_output_history_gc_work_on_the_postgres_store_needs_postgres() {
    let Some(server) = TestServer::shared() else {
        return;
    };
    let url = server.database();
    let project = TestProject::new();
    project.write_loop("two", TWO);
    let with = |args: &[&str]| project.dloop(&[args, &["--store", url.as_str()]].concat());

    let run = with(&["run", "two"]);
    assert_eq!(run.code, 0, "{}", run.render());
    let runs = project.root().join(".loops/.dloop/runs");
    let on_disk = std::fs::read_dir(&runs)
        .map(|d| {
            d.filter_map(Result::ok)
                .any(|e| e.path().join("events.jsonl").exists())
        })
        .unwrap_or(false);
    assert!(!on_disk, "the log went to the database, not to files");

    let status = with(&["status", "--all", "--json"]).json();
    let id = status[0]["id"].as_str().expect("id").to_owned();
    assert_eq!(status[0]["status"], "completed");
    let inspect = with(&["inspect", &id, "--json"]).json();
    assert_eq!(
        (inspect["status"].as_str(), inspect["step"].as_u64()),
        (Some("completed"), Some(2))
    );
    let logs = with(&["logs", &id, "--json"]);
    assert_eq!(logs.code, 0, "{}", logs.render());
    assert!(
        logs.stdout
            .lines()
            .last()
            .expect("lines")
            .contains("run_completed")
    );
    let output = with(&["output", &id, "1"]);
    assert_eq!(output.stdout, "one\n", "{}", output.render());
    let history = with(&["history", "--json"]).json();
    assert_eq!(history.as_array().expect("array").len(), 1);

    // DLOOP_STORE picks it too; config.yaml's `store:` too; nothing: the (empty) file store.
    let env = project.dloop_env(&["status", "--all", "--json"], &[("DLOOP_STORE", &url)]);
    assert_eq!(env.json()[0]["id"], id.as_str());
    assert_eq!(
        project.dloop(&["status", "--all", "--json"]).json(),
        serde_json::json!([])
    );
    project.write(".loops/config.yaml", &format!("store: \"{url}\"\n"));
    assert_eq!(
        project.dloop(&["inspect", &id, "--json"]).json()["status"],
        "completed"
    );

    // A paused run resumes from the database; a follower sees the whole log.
    let paused = project.dloop(&["run", "two", "--max-steps", "1"]);
    assert_eq!(paused.code, 3, "{}", paused.render());
    let resumed = project.dloop(&["resume", "two", "--max-steps", "5"]);
    assert_eq!(resumed.code, 0, "{}", resumed.render());
    let follow = project.dloop(&["logs", "two", "-f", "--json"]);
    assert_eq!(follow.code, 0, "{}", follow.render());
    assert!(follow.stdout.contains("run_resumed"), "{}", follow.render());

    let gc = project.dloop(&["gc", "--all"]);
    assert_eq!(gc.code, 0, "{}", gc.render());
    assert!(gc.stdout.contains(&id), "{}", gc.render());
    assert_eq!(gc.stdout.lines().count(), 2, "{}", gc.render());
    assert_eq!(
        project.dloop(&["status", "--all", "--json"]).json(),
        serde_json::json!([])
    );
}

#[test]
fn submit_and_worker_need_a_postgres_store_and_say_so() {
    let project = TestProject::new();
    project.write_loop("two", TWO);
    let submit = project.dloop(&["submit", "two"]);
    assert_eq!(submit.code, 2, "{}", submit.render());
    assert!(
        submit.stderr.contains("needs a PostgreSQL store"),
        "{}",
        submit.render()
    );
    let worker = project.dloop(&["worker"]);
    assert_eq!(worker.code, 2, "{}", worker.render());
    assert!(
        worker.stderr.contains("needs a PostgreSQL store"),
        "{}",
        worker.render()
    );
    let bad = project.dloop(&["status", "--store", "mysql://x"]);
    assert_eq!(bad.code, 2, "{}", bad.render());
    assert!(
        bad.stderr.contains("not a store dloop knows"),
        "{}",
        bad.render()
    );
}
