//! The step loop end to end: shell actions, evaluators, captures, quoting.

use dloop_core::event::Event;
use dloop_core::state::RunStatus;
use dloop_store::Store;

use crate::common::Project;

#[test]
fn check_fix_recheck_completes_and_logs_every_step() {
    let project = Project::new();
    let end = project.run(
        r#"
initial: check
states:
  check:
    shell: test -f "$DLOOP_RUN_DIR/fixed"
    on: { success: done, failure: fix }
  fix:
    shell: touch "$DLOOP_RUN_DIR/fixed"
    next: check
  done:
    terminal: success
"#,
    );
    assert_eq!(end.status, RunStatus::Completed);
    assert_eq!(end.state.step, 3);
    let store = project.store();
    let records: Vec<_> = store
        .records_from(&end.run_id, 1)
        .expect("readable")
        .collect::<Result<_, _>>()
        .expect("valid records");
    for (i, record) in records.iter().enumerate() {
        assert_eq!(record.seq, i as u64 + 1);
    }
    assert!(matches!(
        records.last().map(|r| &r.event),
        Some(Event::RunCompleted { .. })
    ));
    let (folded, _) = store.load_state(&end.run_id).expect("loads");
    assert_eq!(folded, end.state);
}

#[test]
fn captured_hostile_output_is_quoted_in_later_shell_actions() {
    let project = Project::new();
    let marker = project.side_file("pwned");
    let yaml = format!(
        r#"
initial: produce
states:
  produce:
    shell: |
      printf '%s' '$(touch {m}) `touch {m}` ; touch {m} && touch {m} | touch {m}'
    capture: agent
    next: consume
  consume:
    shell: printf '%s' ${{captured.agent.output}} > "$DLOOP_RUN_DIR/echo"
    next: done
  done:
    terminal: success
"#,
        m = marker.display()
    );
    let end = project.run(&yaml);
    assert_eq!(
        end.status,
        RunStatus::Completed,
        "{:?}",
        end.state.last_error
    );
    assert!(!marker.exists(), "interpolated output ran as shell syntax");
    let run_dir = project.store().local_run_dir(&end.run_id).expect("run dir");
    let echoed = std::fs::read_to_string(run_dir.join("work/echo")).expect("echo written");
    assert!(echoed.starts_with("$(touch "), "{echoed}");
}
