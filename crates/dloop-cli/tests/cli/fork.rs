//! `dloop fork RUN --at STEP`: the fork's first new step is STEP+1 in the state and with the
//! context the source had then; the source run's files are byte-identical afterwards.

use crate::common::{TestProject, count, files, verified_log};

/// Ten steps alternating `a` and `b`; each appends its step and a context value to a file in
/// `${run.dir}`; `b` ends the run at step 10.
const TEN_STEPS: &str = "initial: a\ncontext:\n  tag: x\nstates:\n  a:\n    shell: echo \"a $DLOOP_ITERATION ${context.tag}\" >> ${run.dir}/trail\n    next: b\n  b:\n    shell: echo \"b $DLOOP_ITERATION ${context.tag}\" >> ${run.dir}/trail; test $DLOOP_ITERATION -lt 10\n    on:\n      success: a\n      failure: done\n  done:\n    terminal: success\n";

fn entered(records: &[serde_json::Value]) -> Vec<(u64, String)> {
    records
        .iter()
        .filter(|r| r["type"] == "state_entered")
        .map(|r| {
            (
                r["step"].as_u64().expect("step"),
                r["state"].as_str().expect("state").to_owned(),
            )
        })
        .collect()
}

#[test]
fn fork_at_step_4_continues_with_step_5_and_leaves_the_source_byte_identical() {
    let p = TestProject::new();
    p.write_loop("ten", TEN_STEPS);
    let out = p.dloop(&["run", "ten"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let (source, source_dir) = p.only_run();
    let before = files(&source_dir);
    let source_records = verified_log(&source_dir);

    let out = p.dloop(&["fork", &source, "--at", "4"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(files(&source_dir), before, "the source run is untouched");

    let dirs = p.run_dirs();
    assert_eq!(dirs.len(), 2, "{dirs:?}");
    let fork_dir = dirs.into_iter().find(|d| *d != source_dir).expect("fork");
    let records = verified_log(&fork_dir);
    assert_eq!(records[0]["type"], "run_started");
    assert_eq!(
        records[0]["run_id"].as_str(),
        fork_dir.file_name().and_then(|n| n.to_str())
    );
    let link = records
        .iter()
        .position(|r| r["type"] == "forked_from")
        .expect("forked_from record");
    assert_eq!(records[link]["run_id"], source.as_str());
    assert_eq!(records[link]["step"], 4);
    assert_eq!(count(&records, "forked_from"), 1);
    assert_eq!(count(&source_records, "forked_from"), 0);
    // The history before the link is the source's, step by step.
    assert_eq!(
        entered(&records[..link]),
        entered(&source_records)[..4].to_vec()
    );
    // The first new step is 5, in the state the source entered at step 5; then on to 10.
    let after = entered(&records[link..]);
    assert_eq!(after[0], entered(&source_records)[4]);
    assert_eq!(after, entered(&source_records)[4..].to_vec());
    assert_eq!(records.last().expect("last")["type"], "run_completed");
    // The fork's own steps ran with the source's context.
    let trail = std::fs::read_to_string(fork_dir.join("work/trail")).expect("trail");
    assert_eq!(
        trail, "a 5 x\nb 6 x\na 7 x\nb 8 x\na 9 x\nb 10 x\n",
        "steps 5-10 ran in the fork"
    );
    let inspect = |id: &str| {
        let out = p.dloop(&["inspect", id, "--json"]);
        assert_eq!(out.code, 0, "{}", out.stderr);
        out.json()
    };
    let fork_id = fork_dir
        .file_name()
        .expect("name")
        .to_string_lossy()
        .into_owned();
    assert_eq!(inspect(&fork_id)["context"], inspect(&source)["context"]);
}

#[test]
fn fork_of_a_step_the_run_never_finished_is_refused_and_makes_nothing() {
    let p = TestProject::new();
    p.write_loop("ten", TEN_STEPS);
    let out = p.dloop(&["run", "ten", "--max-steps", "3"]);
    assert_eq!(out.code, 3, "{}", out.stderr);
    let (source, _) = p.only_run();
    let out = p.dloop(&["fork", &source, "--at", "7"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("no finished step 7"), "{}", out.stderr);
    assert_eq!(p.run_dirs().len(), 1);
}

#[test]
fn fork_with_reload_continues_with_the_edited_loop_and_records_the_definition() {
    let p = TestProject::new();
    p.write_loop("ten", TEN_STEPS);
    let out = p.dloop(&["run", "ten"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let (source, source_dir) = p.only_run();
    let before = files(&source_dir);
    // The edit: `a` now writes `A`, and the context default changed (the fork keeps the
    // source's context as it was at step 4, whatever the file says now).
    p.write_loop(
        "ten",
        &TEN_STEPS
            .replace("echo \"a ", "echo \"A ")
            .replace("tag: x", "tag: y"),
    );

    let out = p.dloop(&["fork", &source, "--at", "4", "--reload"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(files(&source_dir), before, "the source run is untouched");
    let fork_dir = p
        .run_dirs()
        .into_iter()
        .find(|d| *d != source_dir)
        .expect("fork");
    let records = verified_log(&fork_dir);
    assert_eq!(count(&records, "definition_reloaded"), 1);
    let trail = std::fs::read_to_string(fork_dir.join("work/trail")).expect("trail");
    assert_eq!(
        trail, "A 5 x\nb 6 x\nA 7 x\nb 8 x\nA 9 x\nb 10 x\n",
        "the fork's steps ran the edited actions with the source's context"
    );
}

#[test]
fn fork_with_reload_of_an_invalid_loop_is_refused_and_makes_nothing() {
    let p = TestProject::new();
    p.write_loop("ten", TEN_STEPS);
    let out = p.dloop(&["run", "ten"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let (source, source_dir) = p.only_run();
    let before = files(&source_dir);
    p.write_loop("ten", &TEN_STEPS.replace("next: b", "next: nowhere"));

    let out = p.dloop(&["fork", &source, "--at", "4", "--reload"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("nowhere"), "{}", out.stderr);
    assert!(out.stderr.contains("no fork was made"), "{}", out.stderr);
    assert_eq!(
        p.run_dirs(),
        vec![source_dir.clone()],
        "nothing was created"
    );
    assert_eq!(files(&source_dir), before);
}
