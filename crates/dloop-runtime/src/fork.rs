//! `dloop fork RUN --at STEP`: a new run whose history is the source run's up to the end of
//! STEP, paused there, so a resume (which the CLI starts at once) continues it live with step
//! STEP+1.
//!
//! The cut: every record up to the last `action_finished` of STEP, then the records that route
//! out of it (`judged`, `agent_session`, `evaluated`, `transitioned`, `retry_scheduled`,
//! `handoff_detected`), and nothing after (the `state_entered` of STEP+1, a pause, an end).
//! The fold of the copy is therefore the source's state at the end of STEP, routed into the
//! state the source entered at STEP+1: context, captures, counters and step as they were then.
//!
//! What the fork gets: the copied records with their seqs (only `run_started.run_id` is
//! rewritten to the fork's id, so new steps' idempotency keys are the fork's), the blobs those
//! records name (prompts, reloaded definitions), the source's output stream up to the end of
//! the last copied output (records point into it by offset), then a `forked_from` record and a
//! `run_paused` (reason `stopped`). The source is only read: its files stay byte-identical, so
//! the link is recorded in the fork's log alone (`forked_from`). The source's `${run.dir}`
//! files are not copied: the fork's work folder starts empty.

use dloop_core::event::{Event, PauseReason};
use dloop_core::run_id::RunId;
use dloop_core::{Record, RunState};
use dloop_store::{RunMeta, Store, StoreError};

use crate::driver::now;
use crate::error::RuntimeError;

/// Records appended per batch while copying.
const BATCH: usize = 256;

/// What a fork made.
#[derive(Debug, Clone)]
pub struct Forked {
    /// The new run's id.
    pub run_id: String,
    /// Its state (paused at the end of the step).
    pub state: RunState,
    /// The source's last seq copied.
    pub seq: u64,
}

/// How many of `records` make up the source's history to the end of `step` (see the module
/// documentation); `None` when the log has no finished action of `step`.
pub fn cut_after_step(records: &[Record], step: u64) -> Option<usize> {
    let last = records.iter().rposition(
        |record| matches!(&record.event, Event::ActionFinished { step: s, .. } if *s == step),
    )?;
    let mut end = last + 1;
    while let Some(record) = records.get(end) {
        let routes = matches!(
            record.event,
            Event::Judged { .. }
                | Event::AgentSession { .. }
                | Event::Evaluated { .. }
                | Event::Transitioned { .. }
                | Event::RetryScheduled { .. }
                | Event::HandoffDetected { .. }
        );
        if !routes {
            break;
        }
        end += 1;
    }
    Some(end)
}

/// Creates a fork of run `source` at the end of `step`, paused; `argv` is the command line for
/// its `run.json`. The fork uses the definition the source had in force then (its
/// `definition_reloaded` blobs are copied, and its sub-loop bundle); `resume --reload`
/// semantics apply after.
///
/// # Errors
/// The step has no finished action in the source, the source works in a worktree, or the
/// store failed.
pub fn fork_run(
    store: &dyn Store,
    source: &str,
    step: u64,
    argv: Vec<String>,
) -> Result<Forked, RuntimeError> {
    let meta = store.read_meta(source)?;
    if meta.worktree.is_some() {
        return Err(RuntimeError::Fork(format!(
            "run {source} works in a git worktree; forking worktree runs is not supported yet"
        )));
    }
    let records = store
        .records_from(source, 1)?
        .collect::<Result<Vec<_>, _>>()?;
    let Some(end) = cut_after_step(&records, step) else {
        let last = records
            .iter()
            .filter_map(|r| match &r.event {
                Event::ActionFinished { step, .. } => Some(*step),
                _ => None,
            })
            .max();
        return Err(RuntimeError::Fork(format!(
            "run {source} has no finished step {step}{}",
            last.map_or_else(
                || " (it finished none)".to_owned(),
                |l| format!("; its steps with a finished action go up to {l}")
            )
        )));
    };
    let copied = &records[..end];
    let seq = copied.last().map_or(0, |r| r.seq);
    let created_at = now();
    let mut created = None;
    for attempt in 0..64 {
        let id = RunId::new(
            &meta.loop_name,
            created_at,
            crate::runs::random_suffix(attempt),
        )?;
        let fork_meta = RunMeta {
            id: id.as_str().to_owned(),
            argv: argv.clone(),
            created_at,
            started: None,
            worktree: None,
            ..meta.clone()
        };
        match store.create_run(&fork_meta) {
            Ok(run) => {
                created = Some((run, fork_meta));
                break;
            }
            Err(StoreError::AlreadyExists { .. }) => continue,
            Err(err) => return Err(err.into()),
        }
    }
    let Some((mut run, fork_meta)) = created else {
        return Err(RuntimeError::NoFreeId(meta.loop_name.clone()));
    };
    let id = fork_meta.id.clone();
    run.load_state()?;
    // Blobs first: durable before the records that name them.
    for record in copied {
        let name = match &record.event {
            Event::ActionStarted { prompt, .. } | Event::Judged { prompt, .. } => prompt.clone(),
            Event::DefinitionReloaded { definition_sha256 } => {
                Some(format!("definition-{definition_sha256}.yaml"))
            }
            _ => None,
        };
        if let Some(name) = name
            && let Some(bytes) = store.get_blob(source, &name)?
        {
            run.put_blob(&name, &bytes)?;
        }
    }
    // A submitted run's sub-loops: the fork's children start from them too, as the source's.
    if let Some(bytes) = store.get_blob(source, crate::subloop::BUNDLE_BLOB)? {
        run.put_blob(crate::subloop::BUNDLE_BLOB, &bytes)?;
    }
    // The output stream up to the end of the last copied output, so offsets stay true.
    let output_end = copied
        .iter()
        .filter_map(|r| match &r.event {
            Event::ActionFinished { result, .. } => result.output_offset.map(|o| o + result.bytes),
            _ => None,
        })
        .max()
        .unwrap_or(0);
    if output_end > 0 {
        let (bytes, _) = store.read_output(source, 0, Some(output_end))?;
        let mut output = run.open_output()?;
        output.append(&bytes)?;
        output.sync()?;
    }
    let mut state = RunState::default();
    for chunk in copied.chunks(BATCH) {
        // Every record of a chunk keeps its own time; a batch has one, so runs of records
        // with the same time are appended together.
        let mut start = 0;
        while start < chunk.len() {
            let ts = chunk[start].ts;
            let len = chunk[start..].iter().take_while(|r| r.ts == ts).count();
            let events: Vec<Event> = chunk[start..start + len]
                .iter()
                .map(|r| match &r.event {
                    Event::RunStarted { .. } => {
                        let mut event = r.event.clone();
                        if let Event::RunStarted { run_id, .. } = &mut event {
                            run_id.clone_from(&id);
                        }
                        event
                    }
                    other => other.clone(),
                })
                .collect();
            for record in run.append(&events, ts)? {
                state.apply(&record);
            }
            start += len;
        }
    }
    let link = [
        Event::ForkedFrom {
            run_id: source.to_owned(),
            step,
            source_seq: seq,
        },
        Event::RunPaused {
            reason: PauseReason::Stopped,
            message: Some(format!(
                "forked from run {source} at the end of step {step}"
            )),
        },
    ];
    for record in run.append(&link, now())? {
        state.apply(&record);
    }
    run.save_snapshot(&state)?;
    Ok(Forked {
        run_id: id,
        state,
        seq,
    })
}
