//! `dloop replay RUN [LOOP] [--live]`: a replay against the run's own definition starts no
//! action process (every action appends to a file of the project, and the fake agents log each
//! call) and reaches the recorded end; an edited command or route stops it at the first
//! divergence, named; `--live` goes on for real from there; the source's files stay
//! byte-identical; old logs and bad arguments are refused with a message naming the problem.

use serde_json::Value;

use crate::common::{Output, TestProject, count, files, redact_runs, repo_root, verified_log};

/// Six steps alternating `a` and `b`; each appends `<state> <step>` to `trail` in the project;
/// `a` also writes to stderr, `b` reads `a`'s capture and writes into `${run.dir}`.
pub(crate) const SIX: &str = "initial: a\ncontext:\n  tag: x\nstates:\n  a:\n    shell: echo \"a $DLOOP_ITERATION ${context.tag}\" | tee -a trail; echo warn >&2\n    capture: last\n    next: b\n  b:\n    shell: echo \"b $DLOOP_ITERATION\" | tee -a trail; echo ${captured.last.output} > ${run.dir}/seen; test $DLOOP_ITERATION -lt 6\n    on:\n      success: a\n      failure: done\n  done:\n    terminal: success\n";

/// A project with `SIX` run to its end; returns it, the run id and its folder.
fn six_run() -> (TestProject, String, std::path::PathBuf) {
    let p = TestProject::new();
    p.write_loop("six", SIX);
    let out = p.dloop(&["run", "six"]);
    assert_eq!(out.code, 0, "{}", out.render());
    let (id, dir) = p.only_run();
    assert_eq!(p.read("trail").lines().count(), 6);
    (p, id, dir)
}

/// Nothing of a plain replay remains: no new run, an empty scratch folder.
pub(crate) fn assert_nothing_left(p: &TestProject) {
    assert_eq!(p.run_dirs().len(), 1, "a plain replay leaves no run");
    let scratch = p.root().join(".loops/.dloop/scratch");
    let left: Vec<_> = std::fs::read_dir(&scratch)
        .map(|d| {
            d.map(|e| e.expect("entry").path())
                .filter(|p| p.file_name().is_some_and(|n| n != ".registry"))
                .collect()
        })
        .unwrap_or_default();
    assert!(left.is_empty(), "scratch folders left: {left:?}");
}

/// One row of `--json`'s `steps`: step, state, recorded verdict, verdict, result.
type Row = (u64, String, Option<String>, Option<String>, String);

fn steps(json: &Value) -> Vec<Row> {
    json["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .map(|s| {
            (
                s["step"].as_u64().expect("step"),
                s["state"].as_str().expect("state").to_owned(),
                s["recorded_verdict"].as_str().map(str::to_owned),
                s["verdict"].as_str().map(str::to_owned),
                s["result"].as_str().expect("result").to_owned(),
            )
        })
        .collect()
}

#[test]
fn replay_against_its_own_definition_starts_no_process_and_reaches_the_same_end() {
    let (p, id, dir) = six_run();
    let trail = p.read("trail");
    let before = files(&dir);

    let out = p.dloop(&["replay", &id]);
    insta::assert_snapshot!(redact_runs(&out.render()));
    assert_eq!(out.code, 0);
    assert_eq!(p.read("trail"), trail, "no action process started");
    assert_eq!(files(&dir), before, "the source run is byte-identical");
    assert_nothing_left(&p);

    let out = p.dloop(&["replay", "six", "--json"]);
    assert_eq!(out.code, 0, "{}", out.render());
    let json = out.json();
    assert_eq!(json["source"], id.as_str());
    assert_eq!(json["outcome"], "matched");
    assert_eq!(json["live"], false);
    assert_eq!(json["run_id"], Value::Null);
    assert_eq!(json["divergence"], Value::Null);
    assert_eq!(json["end"], json["recorded_end"]);
    assert_eq!(json["end"]["status"], "completed");
    assert_eq!(json["end"]["state"], "done");
    assert_eq!(json["end"]["step"], 6);
    assert_eq!(json["saved"]["actions"], 6);
    let path = steps(&json);
    assert_eq!(path.len(), 7, "six steps and the terminal state: {path:?}");
    for (step, state, recorded, replayed, result) in &path[..6] {
        assert_eq!(
            recorded, replayed,
            "step {step} ({state}): the same verdict"
        );
        assert_eq!(result, "reused");
    }
    assert_eq!(path[6].1, "done");
    assert_eq!(p.read("trail"), trail);
    assert_eq!(files(&dir), before);
    assert_nothing_left(&p);
}

#[test]
fn an_edited_command_stops_at_the_first_divergence_and_names_the_state() {
    let (p, id, dir) = six_run();
    let trail = p.read("trail");
    let before = files(&dir);
    p.write(
        "edited.yaml",
        &SIX.replace("echo \"b $DLOOP_ITERATION\"", "echo \"B $DLOOP_ITERATION\""),
    );

    let out = p.dloop(&["replay", &id, "edited.yaml"]);
    insta::assert_snapshot!(redact_runs(&out.render()));
    assert_eq!(out.code, 5, "diverged");
    assert_eq!(
        p.read("trail"),
        trail,
        "nothing ran, not even the changed step"
    );
    assert_eq!(files(&dir), before);
    assert_nothing_left(&p);

    let out = p.dloop(&["replay", &id, "edited.yaml", "--json"]);
    assert_eq!(out.code, 5, "{}", out.render());
    let json = out.json();
    assert_eq!(json["outcome"], "diverged");
    assert_eq!(json["definition"], "edited.yaml");
    let divergence = &json["divergence"];
    assert_eq!(divergence["step"], 2);
    assert_eq!(divergence["state"], "b");
    assert_eq!(divergence["kind"], "input");
    let reason = divergence["reason"].as_str().expect("reason");
    assert!(
        reason.contains("the command changed") && reason.contains("B $DLOOP_ITERATION"),
        "{reason}"
    );
    let path = steps(&json);
    assert_eq!(path.len(), 2, "{path:?}");
    assert_eq!(path[0].4, "reused");
    assert_eq!(
        (path[1].0, path[1].1.as_str(), path[1].4.as_str()),
        (2, "b", "stopped")
    );
    assert_eq!(json["saved"]["actions"], 1);
}

#[test]
fn edited_routing_diverges_at_the_step_that_enters_another_state() {
    let (p, id, _) = six_run();
    let trail = p.read("trail");
    // From step 2 on, `b` goes to a new state `c` instead of back to `a`.
    let edited = SIX
        .replace("      success: a\n", "      success: c\n")
        .replace(
            "  done:\n",
            "  c:\n    shell: echo c >> trail\n    next: a\n  done:\n",
        );
    p.write(".loops/rerouted.yaml", &edited);
    let out = p.dloop(&["replay", &id, "rerouted", "--json"]);
    assert_eq!(out.code, 5, "{}", out.render());
    let json = out.json();
    let divergence = &json["divergence"];
    assert_eq!(divergence["step"], 3);
    assert_eq!(divergence["state"], "c");
    assert_eq!(divergence["kind"], "state");
    assert_eq!(
        divergence["reason"],
        "entered `c` where the recorded run entered `a`"
    );
    let path = steps(&json);
    assert_eq!(path.last().expect("a step").4, "stopped");
    assert_eq!(json["steps"][2]["recorded_state"], "a");
    assert_eq!(p.read("trail"), trail, "c never ran");
}

#[test]
fn live_goes_on_for_real_from_the_divergence_as_a_new_run() {
    let (p, id, dir) = six_run();
    let before = files(&dir);
    p.write(
        ".loops/six.yaml",
        &SIX.replace("echo \"b $DLOOP_ITERATION\"", "echo \"B $DLOOP_ITERATION\""),
    );
    let out = p.dloop(&["replay", &id, "six", "--live", "--json"]);
    assert_eq!(out.code, 0, "the live run completed: {}", out.render());
    let trail = p.read("trail");
    let new: Vec<&str> = trail.lines().skip(6).collect();
    assert_eq!(
        new,
        ["B 2", "a 3 x", "B 4", "a 5 x", "B 6"],
        "step 1 was reused; steps 2-6 ran for real"
    );
    assert_eq!(files(&dir), before, "the source run is byte-identical");
    let json = out.json();
    assert_eq!(json["outcome"], "diverged");
    assert_eq!(json["live"], true);
    assert_eq!(json["divergence"]["step"], 2);
    assert_eq!(json["end"]["status"], "completed");
    let results: Vec<String> = steps(&json).into_iter().map(|s| s.4).collect();
    assert_eq!(
        results,
        [
            "reused",
            "live",
            "live",
            "live",
            "live",
            "live",
            "no_action"
        ]
    );
    // The replay is a real run of the project, linked to its source in its own log only.
    let run_id = json["run_id"].as_str().expect("run id").to_owned();
    let dirs = p.run_dirs();
    assert_eq!(dirs.len(), 2);
    let replay_dir = dirs.iter().find(|d| **d != dir).expect("the replay's run");
    assert!(replay_dir.ends_with(&run_id));
    let records = verified_log(replay_dir);
    let link = records
        .iter()
        .find(|r| r["type"] == "replayed_from")
        .expect("replayed_from");
    assert_eq!(link["run_id"], id.as_str());
    assert_eq!(count(&verified_log(&dir), "replayed_from"), 0);
    assert_eq!(records.last().expect("records")["type"], "run_completed");
    let out = p.dloop(&["logs", &run_id, "--type", "replayed_from"]);
    assert_eq!(out.code, 0, "{}", out.render());
    assert!(
        out.stdout
            .contains(&format!("replayed_from        run {id}")),
        "{}",
        out.stdout
    );
    let out = p.dloop(&["inspect", &run_id, "--json"]);
    assert_eq!(out.code, 0, "{}", out.render());
    assert_eq!(out.json()["status"], "completed");
}

#[test]
fn a_changed_evaluator_reuses_the_action_and_shows_the_verdict_difference() {
    let p = TestProject::new();
    let loop_text = "initial: a\nstates:\n  a:\n    shell: echo hello | tee -a trail\n    evaluate: { type: contains, pattern: hello }\n    on: { success: done, failure: done }\n  done:\n    terminal: success\n";
    p.write_loop("greet", loop_text);
    let out = p.dloop(&["run", "greet"]);
    assert_eq!(out.code, 0, "{}", out.render());
    let (id, _) = p.only_run();
    p.write(
        "bye.yaml",
        &loop_text.replace("pattern: hello", "pattern: bye"),
    );
    let out = p.dloop(&["replay", &id, "bye.yaml"]);
    insta::assert_snapshot!(redact_runs(&out.render()));
    assert_eq!(out.code, 0, "same path, same end");
    let out = p.dloop(&["replay", &id, "bye.yaml", "--json"]);
    let json = out.json();
    assert_eq!(json["steps"][0]["recorded_verdict"], "success");
    assert_eq!(json["steps"][0]["verdict"], "failure");
    assert_eq!(json["steps"][0]["result"], "reused");
    assert_eq!(
        p.read("trail"),
        "hello\n",
        "the action ran once, in the recorded run"
    );
}

/// `PATH` with the fake agents first.
fn fakes_path() -> String {
    format!(
        "{}:{}",
        repo_root().join("tests/fixtures/agents").display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

#[test]
fn a_prompt_run_on_a_fake_agent_is_replayed_from_its_answers_and_the_cost_avoided_is_shown() {
    let p = TestProject::new();
    let check = "c=$(cat count 2>/dev/null || echo 0); c=$((c+1)); echo $c > count; test $c -ge 2";
    p.write_loop(
        "fix",
        &format!(
            "initial: check\nstates:\n  check:\n    shell: '{check}'\n    on: {{ success: done, failure: fix }}\n  fix:\n    prompt: Make the check pass\n    runner: claude\n    next: check\n  done:\n    terminal: success\n"
        ),
    );
    let path = fakes_path();
    let calls = p.root().join("agent.calls");
    let calls = calls.to_str().expect("utf-8 path");
    let env = [("PATH", path.as_str()), ("FAKE_AGENT_LOG", calls)];
    let out = p.dloop_env(&["run", "fix", "--no-llm"], &env);
    assert_eq!(out.code, 0, "{}", out.render());
    let (id, dir) = p.only_run();
    let agent_calls = p.read("agent.calls");
    assert_eq!(agent_calls.matches("argv:").count(), 1);
    let before = files(&dir);

    let out = p.dloop_env(&["replay", &id], &env);
    insta::assert_snapshot!(redact_runs(&out.render()));
    assert_eq!(out.code, 0);
    let out = p.dloop_env(&["replay", &id, "--json"], &env);
    assert_eq!(out.code, 0, "{}", out.render());
    assert_eq!(
        p.read("agent.calls"),
        agent_calls,
        "the agent was not called"
    );
    assert_eq!(p.read("count"), "2\n", "the check did not run");
    assert_eq!(files(&dir), before);
    assert_nothing_left(&p);
    let json = out.json();
    assert_eq!(json["outcome"], "matched");
    let saved = &json["saved"];
    assert_eq!(saved["actions"], 3);
    assert_eq!(saved["cost_usd"], 0.0421);
    assert_eq!(saved["tokens"]["output"], 70);
    assert_eq!(json["steps"][1]["state"], "fix");
    assert_eq!(json["steps"][1]["result"], "reused");
}

#[test]
fn the_llm_judge_is_replayed_too_and_a_changed_criterion_diverges() {
    let p = TestProject::new();
    p.write(
        ".loops/config.yaml",
        "runners:\n  worker:\n    base: command\n    command: [bash, worker.sh]\n  judge:\n    base: command\n    command: [bash, judge.sh]\n",
    );
    p.write(
        "worker.sh",
        "cat >/dev/null\necho worked >> worker.calls\necho 'test result: ok. 3 passed'\n",
    );
    p.write(
        "judge.sh",
        "cat >/dev/null\necho judged >> judge.calls\ncat judge.answer\n",
    );
    p.write(
        "judge.answer",
        r#"{"verdict":"success","confidence":0.9,"evidence":["test result: ok. 3 passed"]}"#,
    );
    let loop_text = "initial: fix\nstates:\n  fix:\n    prompt: Fix the tests\n    runner: worker\n    evaluate: { type: llm, runner: judge, prompt: Do the tests pass? }\n    on: { success: done, _: failed }\n  done:\n    terminal: success\n  failed:\n    terminal: failure\n";
    p.write_loop("fix", loop_text);
    let out = p.dloop(&["run", "fix"]);
    assert_eq!(out.code, 0, "{}", out.render());
    let (id, _) = p.only_run();

    let out = p.dloop(&["replay", &id, "--json"]);
    assert_eq!(out.code, 0, "{}", out.render());
    let json = out.json();
    assert_eq!(json["saved"]["judge_calls"], 1);
    assert_eq!(json["steps"][0]["verdict"], "success");
    assert_eq!(p.read("worker.calls"), "worked\n");
    assert_eq!(p.read("judge.calls"), "judged\n");

    p.write(
        "strict.yaml",
        &loop_text.replace("Do the tests pass?", "Do all 40 tests pass?"),
    );
    let out = p.dloop(&["replay", &id, "strict.yaml", "--json"]);
    assert_eq!(out.code, 5, "{}", out.render());
    let json = out.json();
    assert_eq!(json["divergence"]["kind"], "judge");
    assert_eq!(json["divergence"]["step"], 1);
    assert_eq!(
        json["saved"]["actions"], 1,
        "the action was reused, the judge not"
    );
    assert_eq!(
        p.read("judge.calls"),
        "judged\n",
        "the judge was not called"
    );
}

#[test]
fn a_run_recorded_without_replay_keys_is_refused() {
    let p = TestProject::new();
    let id = "check-fix-20261121T110458-bf0a";
    let fixture = repo_root()
        .join("crates/dloop-store/tests/fixtures/logs/v1")
        .join(id);
    let dest = p.root().join(".loops/.dloop/runs").join(id);
    std::fs::create_dir_all(&dest).expect("mkdir");
    for name in ["run.json", "events.jsonl"] {
        std::fs::copy(fixture.join(name), dest.join(name)).expect("copy");
    }
    let before = files(&dest);
    let out = p.dloop(&["replay", id]);
    insta::assert_snapshot!(out.render());
    assert_eq!(out.code, 2);
    assert_eq!(files(&dest), before);
}

#[test]
fn a_bad_run_or_loop_path_is_named() {
    let (p, id, _) = six_run();
    let out: Output = p.dloop(&["replay", "nosuchrun"]);
    assert_eq!(out.code, 2, "{}", out.render());
    assert!(out.stderr.contains("nosuchrun"), "{}", out.stderr);
    let out = p.dloop(&["replay", &id, "missing.yaml"]);
    assert_eq!(out.code, 2, "{}", out.render());
    assert!(out.stderr.contains("missing.yaml"), "{}", out.stderr);
    p.write(
        "broken.yaml",
        "initial: nowhere\nstates:\n  a:\n    shell: true\n",
    );
    let out = p.dloop(&["replay", &id, "broken.yaml"]);
    assert_eq!(out.code, 2, "{}", out.render());
    assert!(out.stderr.contains("broken.yaml"), "{}", out.stderr);
    // Replay has no `--reload`: the refusal says what it did not do, not a flag it lacks.
    assert!(
        out.stderr.contains("nothing was replayed"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("--reload"), "{}", out.stderr);
    assert_eq!(p.run_dirs().len(), 1);
}

#[test]
fn a_run_that_crashed_and_was_resumed_or_paused_at_max_steps_replays_to_its_end() {
    // SIGKILL after step 3's action ran and before its result was recorded: resume runs it
    // again; the replay reuses the result that was recorded.
    let p = TestProject::new();
    p.write_loop("six", SIX);
    let out = p.dloop_env(
        &["run", "six"],
        &[("DLOOP_CRASH_AT", "after_side_effect:3")],
    );
    assert_eq!(out.signal, Some(9), "{}", out.render());
    let out = p.dloop(&["resume", "six"]);
    assert_eq!(out.code, 0, "{}", out.render());
    let (id, dir) = p.only_run();
    assert_eq!(count(&verified_log(&dir), "action_interrupted"), 1);
    let trail = p.read("trail");
    let out = p.dloop(&["replay", &id, "--json"]);
    assert_eq!(out.code, 0, "{}", out.render());
    assert_eq!(out.json()["saved"]["actions"], 6);
    assert_eq!(p.read("trail"), trail);

    // Paused by `--max-steps 3`, resumed with a larger limit: the replay runs through.
    let p = TestProject::new();
    p.write_loop("six", SIX);
    let out = p.dloop(&["run", "six", "--max-steps", "3"]);
    assert_eq!(out.code, 3, "{}", out.render());
    let out = p.dloop(&["resume", "six", "--max-steps", "10"]);
    assert_eq!(out.code, 0, "{}", out.render());
    let (id, _) = p.only_run();
    let out = p.dloop(&["replay", &id, "--json"]);
    assert_eq!(out.code, 0, "{}", out.render());
    let json = out.json();
    assert_eq!(json["outcome"], "matched");
    assert_eq!(json["end"]["step"], 6);
}

#[test]
fn a_live_replay_killed_mid_way_is_a_crashed_run_that_resume_finishes() {
    let (p, id, dir) = six_run();
    let before = files(&dir);
    p.write(
        "edited.yaml",
        &SIX.replace("echo \"b $DLOOP_ITERATION\"", "echo \"B $DLOOP_ITERATION\""),
    );
    // Killed after the intent of step 3 (the second live step) is durable.
    let out = p.dloop_env(
        &["replay", &id, "edited.yaml", "--live"],
        &[("DLOOP_CRASH_AT", "after_intent:3")],
    );
    assert_eq!(out.signal, Some(9), "{}", out.render());
    assert_eq!(files(&dir), before, "the source run is byte-identical");
    let replay_dir = p
        .run_dirs()
        .into_iter()
        .find(|d| *d != dir)
        .expect("the live replay's run");
    let replay_id = replay_dir
        .file_name()
        .expect("name")
        .to_string_lossy()
        .into_owned();
    let out = p.dloop(&["status", "--json"]);
    assert_eq!(out.code, 0, "{}", out.render());
    let status = out.json();
    let row = status
        .as_array()
        .expect("rows")
        .iter()
        .find(|r| r["id"] == replay_id.as_str())
        .expect("the replay is listed");
    assert_eq!(row["status"], "crashed");
    let out = p.dloop(&["resume", &replay_id]);
    assert_eq!(out.code, 0, "{}", out.render());
    let records = verified_log(&replay_dir);
    assert_eq!(records.last().expect("records")["type"], "run_completed");
    assert_eq!(count(&records, "replayed_from"), 1);
    assert_eq!(files(&dir), before);
}

#[test]
fn a_pause_the_source_was_resumed_from_is_resumed_in_the_replay() {
    // The agent cannot log in on its first call (the run pauses, `agent_error`); resumed, it
    // answers. The replay reaches the same pause, resumes it, and reuses both calls.
    let p = TestProject::new();
    p.write_loop(
        "ask",
        "initial: ask\nstates:\n  ask:\n    prompt: Do it\n    runner: claude\n    next: done\n  done:\n    terminal: success\n",
    );
    p.write("modes", "auth\nok\n");
    let path = fakes_path();
    let script = p.root().join("modes");
    let env = [
        ("PATH", path.as_str()),
        ("FAKE_AGENT_SCRIPT", script.to_str().expect("utf-8")),
    ];
    let out = p.dloop_env(&["run", "ask", "--no-llm"], &env);
    assert_eq!(out.code, 3, "{}", out.render());
    let out = p.dloop_env(&["resume", "ask"], &env);
    assert_eq!(out.code, 0, "{}", out.render());
    let (id, _) = p.only_run();
    let calls = p.read("modes.count");
    let out = p.dloop_env(&["replay", &id, "--json"], &env);
    assert_eq!(out.code, 0, "{}", out.render());
    let json = out.json();
    assert_eq!(json["outcome"], "matched");
    assert_eq!(json["saved"]["actions"], 2);
    assert_eq!(p.read("modes.count"), calls, "the agent was not called");
}

#[test]
fn a_planted_link_for_the_scratch_folder_is_refused() {
    let (p, id, _) = six_run();
    let elsewhere = p.root().join("elsewhere");
    std::fs::create_dir(&elsewhere).expect("mkdir");
    std::os::unix::fs::symlink(&elsewhere, p.root().join(".loops/.dloop/scratch")).expect("link");
    let out = p.dloop(&["replay", &id]);
    assert_eq!(out.code, 70, "{}", out.render());
    assert!(out.stderr.contains("scratch"), "{}", out.stderr);
    assert_eq!(
        std::fs::read_dir(&elsewhere).expect("read").count(),
        0,
        "nothing was written through the link"
    );
}
