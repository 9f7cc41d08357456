//! The fold of sub-loop records: a parent's `sub_loop_started` names the child of a step, a
//! child's `sub_loop_of` its parent and depth; both survive a JSON round trip of the state and
//! are absent from (and not needed by) states written before they existed; a rewind forgets
//! the children of the steps it takes back.

use std::collections::BTreeMap;

use dloop_core::event::ActionKind;
use dloop_core::state::ChildRun;
use dloop_core::{Event, Record, RunState, Timestamp};

fn records(events: Vec<Event>) -> Vec<Record> {
    events
        .into_iter()
        .enumerate()
        .map(|(i, event)| Record {
            seq: i as u64 + 1,
            ts: Timestamp::from_millis(1_000 + i as u64),
            event,
        })
        .collect()
}

fn started(run_id: &str) -> Event {
    Event::RunStarted {
        run_id: run_id.into(),
        loop_name: "l".into(),
        definition_sha256: "00".into(),
        initial: "sub".into(),
        context: BTreeMap::new(),
        max_steps: 10,
        timeout_ms: None,
        delay_ms: None,
    }
}

fn sub_step(step: u64, child: &str) -> Vec<Event> {
    vec![
        Event::StateEntered {
            state: "sub".into(),
            step,
            visit: step,
        },
        Event::ActionStarted {
            state: "sub".into(),
            step,
            kind: ActionKind::SubLoop,
            idempotency_key: format!("p:{step}"),
            output_path: "output.log".into(),
            output_offset: None,
            profile: None,
            prompt: None,
            continues_session: None,
        },
        Event::SubLoopStarted {
            state: "sub".into(),
            step,
            child_run_id: child.into(),
        },
    ]
}

#[test]
fn a_parent_knows_the_child_of_each_step() {
    let mut events = vec![started("p")];
    events.extend(sub_step(1, "c1"));
    let state = RunState::from_records(&records(events));
    assert_eq!(
        state.child_of_step(1),
        Some(&ChildRun {
            state: "sub".into(),
            step: 1,
            run_id: "c1".into()
        })
    );
    assert_eq!(state.child_of_step(2), None);
    assert_eq!(state.depth(), 0);
    let back: RunState =
        serde_json::from_str(&serde_json::to_string(&state).expect("json")).expect("parses");
    assert_eq!(back, state);
}

#[test]
fn a_child_knows_its_parent_and_depth() {
    let events = vec![
        started("c"),
        Event::SubLoopOf {
            run_id: "p".into(),
            state: "sub".into(),
            step: 3,
            depth: 2,
        },
    ];
    let state = RunState::from_records(&records(events));
    let parent = state.parent.as_ref().expect("a parent");
    assert_eq!((parent.run_id.as_str(), parent.step), ("p", 3));
    assert_eq!(state.depth(), 2);
    // A state written before sub-loops existed has neither field, and loads.
    let mut json = serde_json::to_value(RunState::default()).expect("json");
    let object = json.as_object_mut().expect("object");
    assert!(!object.contains_key("parent") && !object.contains_key("children"));
    let old: RunState = serde_json::from_value(json).expect("old state loads");
    assert_eq!(old.depth(), 0);
}

#[test]
fn a_rewind_forgets_the_children_of_later_steps() {
    let mut events = vec![started("p")];
    events.extend(sub_step(1, "c1"));
    let at_step_one = RunState::from_records(&records(events.clone()));
    events.extend(sub_step(2, "c2"));
    events.push(Event::RunRewound {
        step: 1,
        tree: "t".into(),
        state: Box::new(at_step_one),
    });
    let state = RunState::from_records(&records(events));
    assert_eq!(
        state.child_of_step(1).map(|c| c.run_id.as_str()),
        Some("c1")
    );
    // Step 2 will be taken again: it must start a new child, not find the old one.
    assert_eq!(state.child_of_step(2), None);
}

#[test]
fn a_fork_of_a_child_has_no_parent() {
    let events = vec![
        started("fork"),
        Event::SubLoopOf {
            run_id: "p".into(),
            state: "sub".into(),
            step: 1,
            depth: 1,
        },
        Event::ForkedFrom {
            run_id: "c".into(),
            step: 1,
            source_seq: 2,
        },
    ];
    let state = RunState::from_records(&records(events));
    assert_eq!(state.parent, None);
    assert_eq!(state.depth(), 0);
}
