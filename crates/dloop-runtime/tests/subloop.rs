//! The sub-loop seam without the CLI: a [`SubLoopHost`] over a file store and loop texts held
//! in memory drives children, and the runtime alone keeps the depth bound, even for a cycle no
//! validation stopped.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use dloop_core::state::RunStatus;
use dloop_runtime::RuntimeErrorKind;
use dloop_runtime::subloop::{ChildLoop, MAX_DEPTH, SubLoopHost};
use dloop_store::{FileStore, Store};

use crate::common::{Project, parse};

/// Loops by name, children in `store`.
struct MapHost {
    store: FileStore,
    loops: BTreeMap<String, String>,
}

impl SubLoopHost for MapHost {
    fn load(&self, name: &str) -> Result<ChildLoop, String> {
        let text = self
            .loops
            .get(name)
            .ok_or_else(|| format!("no loop named `{name}`"))?;
        Ok(ChildLoop {
            name: name.to_owned(),
            def: parse(text),
            text: text.clone(),
            path: None,
        })
    }

    fn store(&self) -> &dyn Store {
        &self.store
    }

    fn local_dir(&self, run_id: &str) -> dloop_store::Result<PathBuf> {
        self.store.local_run_dir(run_id)
    }
}

fn host(project: &Project, loops: &[(&str, &str)]) -> Arc<MapHost> {
    Arc::new(MapHost {
        store: project.store(),
        loops: loops
            .iter()
            .map(|(n, t)| ((*n).to_owned(), (*t).to_owned()))
            .collect(),
    })
}

const PARENT: &str = r#"
initial: sub
states:
  sub:
    loop: child
    with: { word: "hello there" }
    capture: sub
    on: { success: done, failure: bad }
  done:
    terminal: success
  bad:
    terminal: failure
"#;

#[test]
fn a_host_over_any_store_runs_the_child_and_links_both_ways() {
    let project = Project::new();
    let child = "initial: a\ncontext: { word: '' }\nstates:\n  a:\n    shell: printf '%s' ${context.word}\n    capture: said\n    next: done\n  done:\n    terminal: success\n";
    let mut options = project.options();
    options.sub_loops = Some(host(&project, &[("child", child)]));
    let end = project.run_with(PARENT, options);
    assert_eq!(end.status, RunStatus::Completed);
    let link = end.state.children.first().expect("a child");
    let store = project.store();
    let (child_state, _) = store.load_state(&link.run_id).expect("the child's log");
    assert_eq!(child_state.status, RunStatus::Completed);
    let parent = child_state.parent.expect("a parent");
    assert_eq!(
        (parent.run_id.as_str(), parent.depth),
        (end.run_id.as_str(), 1)
    );
    let output = &end.state.captures["sub"].result.excerpt;
    let outcome: serde_json::Value = serde_json::from_str(output).expect("outcome JSON");
    assert_eq!(outcome["captured"]["said"]["output"], "hello there");
}

#[test]
fn a_loop_with_a_sub_loop_is_refused_without_a_host() {
    let project = Project::new();
    let def = parse(PARENT);
    let request = dloop_runtime::runs::StartRequest {
        def: &def,
        definition_text: PARENT,
        loop_name: "parent",
        loop_path: None,
        context: BTreeMap::new(),
        argv: Vec::new(),
        max_steps: 10,
        timeout_ms: None,
        delay_ms: None,
        scope: None,
        options: dloop_runtime::runs::RunOptions::default(),
    };
    let store = project.store();
    let local_dir = |id: &str| store.local_run_dir(id);
    let err = dloop_runtime::runs::start_run(
        &store,
        &local_dir,
        &request,
        project.options(),
        &mut dloop_runtime::observer::Silent,
    )
    .expect_err("refused");
    assert_eq!(err.kind(), RuntimeErrorKind::Refused);
    assert!(
        store.run_ids().expect("ids").is_empty(),
        "nothing was created"
    );
}

#[test]
fn a_loop_the_host_cannot_give_is_an_error_verdict() {
    let project = Project::new();
    let mut options = project.options();
    options.sub_loops = Some(host(&project, &[]));
    let end = project.run_with(PARENT, options);
    assert_eq!(end.status, RunStatus::Failed);
    let error = end.state.last_error.unwrap_or_default();
    assert!(error.contains("no loop named `child`"), "{error}");
}

#[test]
fn the_depth_bound_stops_a_cycle_that_escaped_validation() {
    let project = Project::new();
    // `again` runs itself: validation would refuse it; the runtime must still end.
    let again = "initial: sub\nstates:\n  sub:\n    loop: again\n    on: { success: done, failure: bad, error: bad }\n  done:\n    terminal: success\n  bad:\n    terminal: failure\n";
    let mut options = project.options();
    options.sub_loops = Some(host(&project, &[("again", again)]));
    let end = project.run_with(again, options);
    assert_eq!(end.status, RunStatus::Failed);
    let store = project.store();
    // The top run and MAX_DEPTH children, no more.
    assert_eq!(store.run_ids().expect("ids").len(), MAX_DEPTH as usize + 1);
}
