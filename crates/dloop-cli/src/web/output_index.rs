//! Where each step's output lies, per run, for `/api/runs/ID/output/STEP`: built once from the
//! run's log and then extended from where it left off, so a page that polls a live step every
//! second costs the records written since its last poll, not the whole log.
//!
//! One thread owns the indexes and their [`Follow`]s (a store and its follows need not be
//! `Send`); request threads ask it through a channel and get a copy of the step's entry. It
//! keeps the [`RUNS`] runs asked about most recently and forgets the others.
//!
//! Invariants:
//! - An index holds exactly what [`Outputs`] would collect from the log's records up to its last
//!   seq: [`Outputs::feed`] is incremental, and a log only grows (a rewind appends a
//!   `run_rewound` record; a log repair cuts only a torn tail, which a follow never returns).
//! - An index never outlives its run: each ask reads the log's first record and the run's last
//!   seq (the state's snapshot and the log after it: a few small reads). A run that is gone,
//!   whose first record differs (deleted and made again under the same id), or whose log ends
//!   before the index does (cut, or an older copy put back), is indexed afresh. A follow that
//!   fails (a log replaced under it) is dropped and the index rebuilt once.

use std::sync::Mutex;
use std::sync::mpsc::{Receiver, Sender, channel};

use dloop_core::Record;
use dloop_store::{Follow, Store};

use crate::error::CliError;
use crate::project::Project;
use crate::runs::store_error;
use crate::step_output::{Outputs, StepOutput};
use crate::storage::Storage;

/// Runs whose index is kept.
pub(crate) const RUNS: usize = 8;

/// The step outputs of one run, from its first record on.
#[derive(Debug)]
pub(crate) struct RunOutputs {
    /// The log's first record: which run (of that id) this index is of.
    first: Option<Record>,
    /// What the output route needs of every step read so far.
    outputs: Outputs,
    /// Records fed so far.
    fed: u64,
    /// The seq of the last record fed (0: none).
    last_seq: u64,
}

impl RunOutputs {
    /// An index of no record yet, of the run whose log starts with `first`.
    pub(crate) fn new(first: Option<Record>) -> RunOutputs {
        RunOutputs {
            first,
            outputs: Outputs::default(),
            fed: 0,
            last_seq: 0,
        }
    }

    /// Takes the next records of the log.
    pub(crate) fn feed(&mut self, records: &[Record]) {
        for record in records {
            self.outputs.feed(record);
        }
        self.fed += records.len() as u64;
        if let Some(last) = records.last() {
            self.last_seq = last.seq;
        }
    }

    /// Whether this index may be of a log that now ends at `log_last_seq`: a log only grows, so
    /// one that ends before what was indexed was cut or replaced (a copy restored over it).
    pub(crate) fn fits(&self, log_last_seq: u64) -> bool {
        self.last_seq <= log_last_seq
    }

    /// Records taken so far.
    #[cfg(test)]
    pub(crate) fn fed(&self) -> u64 {
        self.fed
    }

    /// The latest output of `step`, as a full read of the log would find it.
    pub(crate) fn step(&self, step: u64) -> Option<&StepOutput> {
        self.outputs.steps.iter().rev().find(|s| s.step == step)
    }
}

/// One run's index and the follow that extends it.
struct Indexed {
    id: String,
    outputs: RunOutputs,
    follow: Box<dyn Follow>,
}

/// The indexes of the runs asked about most recently (newest last).
#[derive(Default)]
pub(crate) struct Indexes {
    runs: Vec<Indexed>,
}

impl Indexes {
    /// The latest output of `step` of run `id` (`None`: no such step), with the index brought
    /// up to the log's end.
    pub(crate) fn find(
        &mut self,
        store: &dyn Store,
        id: &str,
        step: u64,
    ) -> Result<Option<StepOutput>, CliError> {
        let indexed = self.current(store, id)?;
        Ok(indexed.outputs.step(step).cloned())
    }

    /// Run `id`'s index, checked against the log and extended to its end; the most recent.
    fn current(&mut self, store: &dyn Store, id: &str) -> Result<&Indexed, CliError> {
        let kept = self.runs.iter().position(|r| r.id == id);
        let mut indexed = kept.map(|i| self.runs.remove(i));
        // A missing run loses its index here (the error is the caller's answer).
        let first = first_record(store, id)?;
        if indexed.as_ref().is_some_and(|r| r.outputs.first != first) {
            indexed = None;
        }
        // Read before the follow goes on, so what it reads is not counted against the log.
        // A state that cannot be read (a log the next read reports) drops the index: it is
        // read afresh, as every request did before there was an index.
        if let Some(run) = &indexed {
            let log_last_seq = store.load_state(id).map(|(state, _)| state.last_seq);
            if !log_last_seq.is_ok_and(|seq| run.outputs.fits(seq)) {
                indexed = None;
            }
        }
        let polled = match indexed {
            Some(mut run) => match run.follow.poll() {
                Ok(records) => {
                    run.outputs.feed(&records);
                    Some(run)
                }
                Err(_) => None,
            },
            None => None,
        };
        let run = match polled {
            Some(run) => run,
            None => build(store, id, first)?,
        };
        if self.runs.len() >= RUNS {
            self.runs.remove(0);
        }
        self.runs.push(run);
        Ok(self.runs.last().expect("just pushed"))
    }
}

/// The first record of run `id`'s log (one batch read), `None` for an empty log.
fn first_record(store: &dyn Store, id: &str) -> Result<Option<Record>, CliError> {
    let mut records = store.records_from(id, 1).map_err(|e| store_error(e, id))?;
    records.next().transpose().map_err(|e| store_error(e, id))
}

/// Indexes run `id` from its first record.
fn build(store: &dyn Store, id: &str, first: Option<Record>) -> Result<Indexed, CliError> {
    let mut follow = store.follow(id, 0).map_err(|e| store_error(e, id))?;
    let records = follow.poll().map_err(|e| store_error(e, id))?;
    let mut outputs = RunOutputs::new(first);
    outputs.feed(&records);
    Ok(Indexed {
        id: id.to_owned(),
        outputs,
        follow,
    })
}

/// A question for the index thread.
struct Ask {
    id: String,
    step: u64,
    reply: Sender<Result<Option<StepOutput>, CliError>>,
}

/// The request threads' door to the index thread.
pub(crate) struct OutputIndex {
    asks: Mutex<Sender<Ask>>,
}

impl OutputIndex {
    /// Starts the index thread on its own store of `project`.
    pub(crate) fn start(project: Project) -> Result<OutputIndex, CliError> {
        let (tx, rx) = channel();
        std::thread::Builder::new()
            .name("dloop-serve-outputs".to_owned())
            .spawn(move || serve_asks(&project, &rx))
            .map_err(|e| CliError::io("starting the output index", e))?;
        Ok(OutputIndex {
            asks: Mutex::new(tx),
        })
    }

    /// The latest output of `step` of run `id` (`None`: the run has no such step).
    pub(crate) fn find(&self, id: &str, step: u64) -> Result<Option<StepOutput>, CliError> {
        let (reply, answer) = channel();
        let ask = Ask {
            id: id.to_owned(),
            step,
            reply,
        };
        let sent = self
            .asks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .send(ask);
        let gone = || {
            CliError::new(
                crate::error::ErrorKind::Internal,
                "the output index stopped",
            )
        };
        sent.map_err(|_| gone())?;
        answer.recv().map_err(|_| gone())?
    }
}

/// The index thread: answers asks in turn until the server ends.
fn serve_asks(project: &Project, asks: &Receiver<Ask>) {
    let mut indexes = Indexes::default();
    let mut storage = None;
    for ask in asks {
        // Opened at the first ask (a server never asked for output opens none), and again
        // after an ask found none.
        if storage.is_none() {
            match Storage::for_project(project) {
                Ok(opened) => storage = Some(opened),
                Err(e) => {
                    let _ = ask.reply.send(Err(e));
                    continue;
                }
            }
        }
        let store = storage.as_ref().expect("opened above").store();
        let answer = indexes.find(store, &ask.id, ask.step);
        let _ = ask.reply.send(answer);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::step_output::OutputState;
    use dloop_core::Timestamp;
    use dloop_core::event::{ActionKind, Event};

    fn record(seq: u64, event: Event) -> Record {
        Record {
            seq,
            ts: Timestamp::from_millis(0),
            event,
        }
    }

    fn started(seq: u64, step: u64, offset: u64) -> Record {
        record(
            seq,
            Event::ActionStarted {
                state: "a".into(),
                step,
                kind: ActionKind::Shell,
                idempotency_key: format!("k{step}"),
                output_path: "output.log".into(),
                output_offset: Some(offset),
                profile: None,
                prompt: None,
                continues_session: None,
            },
        )
    }

    #[test]
    fn later_records_extend_the_index_and_match_a_full_read() {
        let first = started(1, 1, 0);
        let log = [first.clone(), started(2, 2, 10), started(3, 3, 25)];
        let mut index = RunOutputs::new(Some(first));
        index.feed(&log[..1]);
        assert_eq!(index.step(1).map(|s| s.status), Some(OutputState::Open));
        assert!(index.step(2).is_none());
        index.feed(&log[1..]);
        // Only the new records were fed: nothing was read twice.
        assert_eq!(index.fed(), 3);
        // A log that now ends before seq 3 is not the one indexed.
        assert!(index.fits(3) && index.fits(4) && !index.fits(2));
        let mut whole = Outputs::default();
        for r in &log {
            whole.feed(r);
        }
        for step in 1..=3 {
            let (a, b) = (
                index.step(step).unwrap(),
                whole.find(Some(&step.to_string())).unwrap(),
            );
            assert_eq!((a.offset, a.bytes, a.status), (b.offset, b.bytes, b.status));
        }
        // The first step was cut off by the second's start: 10 bytes.
        assert_eq!(index.step(1).unwrap().bytes, Some(10));
    }
}
