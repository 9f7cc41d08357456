//! Issue 10's CLI habits with the real binary: global flags (`-C`, `--color`, `-q`), messages
//! that say what happened and what to do (a missing file, a misspelt loop or run, a finished run
//! that cannot be cancelled or stopped), `history` of an unknown loop, `gc --all` and `rm`.

use crate::common::{TestProject, project_with_loops, redact_runs};

/// A project with one finished run of `quick`; returns it with the run's id.
fn finished() -> (TestProject, String) {
    let p = project_with_loops();
    assert_eq!(p.dloop(&["run", "quick"]).code, 0);
    let (id, _) = p.only_run();
    (p, id)
}

#[test]
fn dash_c_runs_as_if_started_in_that_folder() {
    let p = project_with_loops();
    let elsewhere = tempfile::tempdir().expect("tempdir");
    let root = p.root().display().to_string();
    let out = p.dloop_in(elsewhere.path(), &["-C", &root, "list", "--json"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.json().as_array().map(Vec::len), Some(4));
    let out = p.dloop(&["-C", "no/such/folder", "list"]);
    insta::assert_snapshot!(out.render(), @r"
    ----- stderr -----
    error: -C no/such/folder: no such folder
    hint: give an existing folder
    [exit: 2]
    ");
}

#[test]
fn color_always_colors_a_pipe_and_never_does_not() {
    let p = project_with_loops();
    let out = p.dloop(&["--color", "always", "list"]);
    assert!(out.stdout.contains("\u{1b}["), "{}", out.stdout);
    let out = p.dloop(&["--color", "never", "list"]);
    assert!(!out.stdout.contains("\u{1b}["), "{}", out.stdout);
}

#[test]
fn quiet_runs_print_no_narration() {
    let p = project_with_loops();
    let out = p.dloop(&["-q", "run", "twostep"]);
    assert_eq!((out.code, out.stderr.as_str()), (0, ""));
    let out = p.dloop(&["-q", "run", "nosuch"]);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.starts_with("error: no loop named `nosuch`"),
        "{}",
        out.stderr
    );
}

#[test]
fn a_missing_file_is_named_as_such() {
    let p = project_with_loops();
    insta::assert_snapshot!(p.dloop(&["run", "nope.yaml"]).render(), @r"
    ----- stderr -----
    error: no such file: nope.yaml
    hint: give an existing .yaml or .yml file, or a loop name from `dloop list`
    [exit: 2]
    ");
    insta::assert_snapshot!(p.dloop(&["run", "./nope.yaml"]).render(), @r"
    ----- stderr -----
    error: no such file: ./nope.yaml
    hint: give an existing .yaml or .yml file, or a loop name from `dloop list`
    [exit: 2]
    ");
}

#[test]
fn misspelt_loop_names_and_run_ids_get_a_suggestion() {
    let (p, id) = finished();
    insta::assert_snapshot!(p.dloop(&["run", "quikc"]).render(), @r"
    ----- stderr -----
    error: no loop named `quikc` (looked for .loops/quikc.yaml and .loops/quikc.yml)
    hint: did you mean `quick`? (known loops: broken, quick, slow, twostep)
    [exit: 2]
    ");
    let typo = format!("{}x", &id[..id.len() - 1]);
    let out = p.dloop(&["inspect", &typo]);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains(&format!("hint: did you mean {id}?")),
        "{}",
        out.stderr
    );
    // The 4-hex suffix alone names the run.
    let out = p.dloop(&["inspect", &id[id.len() - 4..], "--json"]);
    assert_eq!(out.json()["id"], id.as_str());
}

#[test]
fn a_finished_run_cannot_be_cancelled_or_stopped_and_says_so() {
    let (p, id) = finished();
    insta::assert_snapshot!(redact_runs(&p.dloop(&["cancel", &id]).render()), @r"
    ----- stderr -----
    error: run quick-YYYYMMDDTHHMMSS-XXXX has already ended (completed): only a paused, crashed or timed-out run can be cancelled
    hint: `dloop rm quick-YYYYMMDDTHHMMSS-XXXX` deletes it
    [exit: 2]
    ");
    insta::assert_snapshot!(redact_runs(&p.dloop(&["stop", &id]).render()), @r"
    ----- stderr -----
    error: run quick-YYYYMMDDTHHMMSS-XXXX has already ended (completed); there is nothing to stop
    [exit: 2]
    ");
}

#[test]
fn a_finished_run_whose_lock_is_still_held_is_not_signalled() {
    // A run's process holds its lock for a moment after its end record (snapshot, exit);
    // `stop` in that moment used to signal the pid in the lock file. Here the lock is held
    // by this test, and the lock file still names the run's own (gone) process.
    let (p, id) = finished();
    let (_, dir) = p.only_run();
    let lock = std::fs::File::open(dir.join("lock")).expect("lock file");
    lock.lock().expect("hold the run lock");
    let out = p.dloop(&["stop", &id]);
    assert_eq!(out.code, 2, "{}", out.render());
    assert!(out.stderr.contains("has already ended"), "{}", out.stderr);
    let out = p.dloop(&["stop", "--force", &id]);
    assert_eq!(out.code, 2, "{}", out.render());
    drop(lock);
}

#[test]
fn history_of_an_unknown_loop_is_an_error_and_limit_zero_is_refused() {
    let (p, _) = finished();
    insta::assert_snapshot!(p.dloop(&["history", "quik"]).render(), @r"
    ----- stderr -----
    error: no loop named `quik` and no runs of one
    hint: did you mean `quick`?
    [exit: 2]
    ");
    let out = p.dloop(&["history", "--limit", "0"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("--limit"), "{}", out.stderr);
    // A loop whose file is gone but whose runs remain still has a history.
    std::fs::remove_file(p.root().join(".loops/quick.yaml")).expect("rm");
    assert_eq!(p.dloop(&["history", "quick"]).code, 0);
}

#[test]
fn rm_deletes_a_finished_run_and_refuses_a_resumable_one_without_force() {
    let (p, id) = finished();
    let out = p.dloop(&["run", "twostep", "--max-steps", "1"]);
    assert_eq!(out.code, 3, "{}", out.stderr);
    let paused = p
        .run_dirs()
        .into_iter()
        .map(|d| d.file_name().expect("name").to_string_lossy().into_owned())
        .find(|name| name.starts_with("twostep-"))
        .expect("paused run");
    let out = p.dloop(&["rm", &paused]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("can still be resumed"),
        "{}",
        out.stderr
    );
    assert_eq!(p.dloop(&["rm", &paused, "--force"]).code, 0);
    let out = p.dloop(&["rm", &id]);
    assert_eq!(
        (out.code, out.stdout.trim()),
        (0, id.as_str()),
        "{}",
        out.stderr
    );
    assert!(p.run_dirs().is_empty());
}

#[test]
fn gc_all_deletes_every_finished_run_whatever_its_age() {
    let (p, id) = finished();
    let out = p.dloop(&["gc"]);
    assert_eq!(out.stdout, "", "a fresh run is younger than 7 days");
    let out = p.dloop(&["gc", "--all"]);
    assert_eq!(out.stdout.trim(), id);
    assert!(
        out.stderr.contains("deleted 1 finished run of any age"),
        "{}",
        out.stderr
    );
}

#[test]
fn resume_max_steps_means_that_many_more_steps() {
    let p = project_with_loops();
    let out = p.dloop(&["run", "twostep", "--max-steps", "1"]);
    assert_eq!(out.code, 3, "{}", out.stderr);
    let (id, _) = p.only_run();
    // One more step runs `b`; reaching `done` is not a step, so the run completes. An absolute
    // budget of 1 would pause again at once.
    let out = p.dloop(&["resume", &id, "--max-steps", "1", "--json"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.json()["step"], 2);
}

#[test]
fn dry_run_json_prints_the_plan_with_values_filled_in() {
    let p = project_with_loops();
    p.write_loop(
        "greet",
        "initial: hello\ncontext:\n  who: world\nstates:\n  hello:\n    shell: echo hello ${context.who} ${prev.output?}\n    next: done\n  done:\n    terminal: success\n",
    );
    let out = p.dloop(&["run", "greet", "-c", "who=it's me", "--dry-run", "--json"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let plan = out.json();
    assert_eq!(plan["loop"], "greet");
    assert_eq!(plan["context"]["who"], "it's me");
    assert_eq!(
        plan["states"][0]["name"], "hello",
        "in the loop file's order"
    );
    let hello = plan["states"]
        .as_array()
        .expect("states")
        .iter()
        .find(|s| s["name"] == "hello")
        .expect("hello");
    assert_eq!(hello["action"], "shell");
    assert_eq!(hello["text"], "echo hello it's me ${prev.output?}");
    assert_eq!(hello["routes"]["next"], "done");
    assert!(
        !p.root().join(".loops/.dloop/runs").exists(),
        "a dry run created a run"
    );
}

#[test]
fn unread_context_keys_and_a_resumable_run_are_pointed_out() {
    let p = project_with_loops();
    let out = p.dloop(&["run", "quick", "-c", "tets_cmd=x", "--max-steps", "1"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("warning: loop `quick` never reads context key `tets_cmd` (-c tets_cmd=...)"),
        "{}",
        out.stderr
    );
    let out = p.dloop(&["run", "twostep", "--max-steps", "1"]);
    assert_eq!(out.code, 3, "{}", out.stderr);
    let (paused, _) = p
        .run_dirs()
        .iter()
        .map(|d| d.file_name().expect("name").to_string_lossy().into_owned())
        .find(|n| n.starts_with("twostep-"))
        .map(|n| (n, ()))
        .expect("paused");
    let out = p.dloop(&["run", "twostep", "some input"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr.contains(&format!(
            "note: loop `twostep` has 1 resumable run ({paused}); `dloop resume {paused}` continues it"
        )),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains("warning: loop `twostep` never reads its input"),
        "{}",
        out.stderr
    );
}

#[test]
fn completions_offer_the_projects_loops_runs_and_states() {
    let (p, id) = finished();
    let complete = |args: &[&str]| {
        let mut full = vec!["--", "dloop"];
        full.extend_from_slice(args);
        let out = p.dloop_env(&full, &[("COMPLETE", "fish")]);
        assert_eq!(out.code, 0, "{}", out.stderr);
        out.stdout
    };
    let loops = complete(&["run", ""]);
    for name in ["quick", "twostep", "broken", "slow"] {
        assert!(
            loops.lines().any(|l| l.starts_with(name)),
            "{name}: {loops}"
        );
    }
    let runs = complete(&["inspect", ""]);
    assert!(runs.lines().any(|l| l.starts_with(&id)), "{runs}");
    let states = complete(&["resume", "--skip-to", ""]);
    assert!(states.lines().any(|l| l.starts_with("done")), "{states}");
}
