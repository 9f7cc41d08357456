//! `dloop serve`'s output index across a server's life: the index built at the first output
//! request is extended, not rebuilt stale, when the run moves on (a later step, a rewind and
//! resume that runs a step again), and a removed run or one made again under the same id never
//! serves the positions of the run that was there before.

use std::time::Duration;

use crate::common::{TestProject, poll, project_with_loops, run_loop};
use crate::gitrepo::{dloop_git, git_project};
use crate::serve_client::Server;

const LIMIT: Duration = Duration::from_secs(60);

/// Step 1 waits for the file `gate`, step 2 prints one line.
const GATED: &str = "initial: wait\nstates:\n  wait:\n    shell: \"while [ ! -e gate ]; do sleep 0.05; done; echo through\"\n    next: second\n  second:\n    shell: echo second-step\n    next: done\n  done:\n    terminal: success\n";

/// Step 2 prints how many times it has run in this run (a rewind and resume runs it again).
const COUNTING: &str = "initial: s1\nstates:\n  s1:\n    shell: echo one > f1.txt\n    next: s2\n  s2:\n    shell: echo s2 >> \"$DLOOP_RUN_DIR/trail\" && echo \"pass $(grep -c . \"$DLOOP_RUN_DIR/trail\")\"\n    next: s3\n  s3:\n    shell: echo three > f3.txt\n    next: done\n  done:\n    terminal: success\n";

fn output_path(id: &str, step: u64) -> String {
    format!("/api/runs/{id}/output/{step}")
}

/// Polls until step `step`'s output is complete; returns its JSON.
fn complete_output(server: &Server, id: &str, step: u64) -> serde_json::Value {
    poll(LIMIT, || {
        let reply = server.get(&output_path(id, step));
        let json = (reply.status == 200).then(|| reply.json())?;
        (json["complete"] == true).then_some(json)
    })
    .unwrap_or_else(|| panic!("step {step} of {id} did not complete"))
}

fn run_dir(p: &TestProject, id: &str) -> std::path::PathBuf {
    p.root().join(".loops/.dloop/runs").join(id)
}

#[test]
fn a_step_written_after_the_first_output_request_is_served() {
    let p = TestProject::new();
    p.write_loop("gated", GATED);
    let out = p.dloop(&["run", "gated", "-b"]);
    assert_eq!(out.code, 0, "{}", out.render());
    let id = out.stdout.trim().to_owned();
    let server = Server::start(&p, &["--addr", "127.0.0.1:0"], &[]);

    // The first request indexes the run while step 1 runs; step 2 is not there yet.
    let open = poll(LIMIT, || {
        let reply = server.get(&output_path(&id, 1));
        (reply.status == 200).then(|| reply.json())
    })
    .expect("step 1 is served while it runs");
    assert_eq!(open["status"], "open", "{open}");
    assert_eq!(open["complete"], false, "{open}");
    assert_eq!(server.get(&output_path(&id, 2)).status, 404);

    p.write("gate", "");
    let second = complete_output(&server, &id, 2);
    assert_eq!(second["text"], "second-step\n", "{second}");
    assert_eq!(second["bytes"], 12, "{second}");
    assert_eq!(second["status"], "finished", "{second}");
    let first = complete_output(&server, &id, 1);
    assert_eq!(first["text"], "through\n", "{first}");
    assert_eq!(first["bytes"], 8, "{first}");
}

#[test]
fn a_rewound_and_resumed_step_serves_its_new_output() {
    let p = git_project();
    p.write_loop("counting", COUNTING);
    let out = dloop_git(&p, &["run", "counting", "--worktree"]);
    assert_eq!(out.code, 0, "{}", out.render());
    let (id, _) = p.only_run();
    let server = Server::start(&p, &["--addr", "127.0.0.1:0"], &[]);
    let before = complete_output(&server, &id, 2);
    assert_eq!(before["text"], "pass 1\n", "{before}");

    let out = dloop_git(&p, &["rewind", &id, "--to", "1"]);
    assert_eq!(out.code, 0, "{}", out.render());
    let out = dloop_git(&p, &["resume", &id]);
    assert_eq!(out.code, 0, "{}", out.render());
    // The step ran again: its new output, where the new run of it wrote it.
    let after = complete_output(&server, &id, 2);
    assert_eq!(after["text"], "pass 2\n", "{after}");
    assert_ne!(after["offset"], serde_json::Value::Null);
    let third = complete_output(&server, &id, 3);
    assert_eq!(third["text"], "", "{third}");
}

#[test]
fn a_removed_run_and_a_run_made_again_under_its_id_serve_no_stale_positions() {
    let p = project_with_loops();
    let quick = run_loop(&p, &["quick"], 0);
    let twostep = run_loop(&p, &["twostep"], 0);
    let server = Server::start(&p, &["--addr", "127.0.0.1:0"], &[]);
    let first = complete_output(&server, &quick, 1);
    assert_eq!(first["text"], "quick\n", "{first}");
    assert_eq!(first["bytes"], 6, "{first}");
    let other = complete_output(&server, &twostep, 1);
    assert_eq!(other["text"], "one\n", "{other}");

    // `quick`'s id now holds another run (a deleted run made again): its own output is
    // served, not `quick`'s 6 bytes from the index (which would read "one\ntw").
    std::fs::remove_dir_all(run_dir(&p, &quick)).expect("remove quick");
    std::fs::rename(run_dir(&p, &twostep), run_dir(&p, &quick)).expect("move twostep");
    let again = complete_output(&server, &quick, 1);
    assert_eq!(again["text"], "one\n", "{again}");
    assert_eq!(again["bytes"], 4, "{again}");
    assert_eq!(complete_output(&server, &quick, 2)["text"], "two\n");
    assert_eq!(server.get(&output_path(&twostep, 1)).status, 404);

    let out = p.dloop(&["rm", &quick]);
    assert_eq!(out.code, 0, "{}", out.render());
    assert_eq!(server.get(&output_path(&quick, 1)).status, 404);
}

#[test]
fn a_log_cut_back_after_it_was_indexed_serves_no_step_past_its_end() {
    let p = project_with_loops();
    let id = run_loop(&p, &["twostep"], 0);
    let server = Server::start(&p, &["--addr", "127.0.0.1:0"], &[]);
    assert_eq!(complete_output(&server, &id, 2)["text"], "two\n");

    // An older copy of the log put back: it ends before the batch that started step 2.
    let dir = run_dir(&p, &id);
    let log = std::fs::read_to_string(dir.join("events.jsonl")).expect("log");
    let mut cut = 0;
    let mut at = 0;
    for line in log.split_inclusive('\n') {
        if line.contains("\"type\":\"action_started\"") && line.contains("\"step\":2,") {
            break;
        }
        at += line.len();
        if !line.contains("\"_more\":true") {
            cut = at;
        }
    }
    assert!(cut > 0 && cut < log.len(), "a batch boundary before step 2");
    std::fs::write(dir.join("events.jsonl"), &log[..cut]).expect("cut the log");
    let _ = std::fs::remove_file(dir.join("state.json"));

    assert_eq!(server.get(&output_path(&id, 2)).status, 404);
    // Step 1's end was in the batch that started step 2: the cut log has it still running,
    // to the stream's end (what a read of the whole log says), not the index's finished step.
    let first = server.get(&output_path(&id, 1)).json();
    assert_eq!(first["status"], "open", "{first}");
    assert_eq!(first["bytes"], serde_json::Value::Null, "{first}");
    assert_eq!(first["text"], "one\ntwo\n", "{first}");
}
