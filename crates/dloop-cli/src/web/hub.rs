//! The live feed behind the web view's server-sent events: one thread follows every run that
//! can still change and fans each change out to the connected pages.
//!
//! Reading stays proportional to what changed: a run is read whole once, when the hub first
//! sees it (its summary, and for a run that is not finished its timeline); after that each tick
//! asks the store only for the run ids (a new run appears, a deleted one goes) and, for each
//! unfinished run, the records after the last one read ([`Store::follow`] keeps its offset)
//! and whether a process holds it. Finished runs cannot change and are not polled.
//!
//! Subscribers get a snapshot of every row and then every change after it, with no gap: the
//! snapshot is taken under the same lock that registers them. A subscriber that falls more than
//! [`QUEUE`] messages behind is dropped (its page reconnects and gets a fresh snapshot) rather
//! than let the hub's memory grow.

use std::collections::BTreeMap;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dloop_core::RunState;
use dloop_store::{Follow, Store};

use super::api::RunRowJson;
use super::steps::Timeline;
use crate::commands::status::now;
use crate::error::CliError;
use crate::runs::{RunInfo, load_summary, store_error};

/// Messages a subscriber may have waiting before it is dropped.
const QUEUE: usize = 4096;

/// One change, as the SSE writer sends it.
#[derive(Debug, Clone)]
pub(crate) enum Change {
    /// A run's row is new or changed.
    Row(Arc<RunRowJson>),
    /// A run was deleted.
    Removed(String),
    /// A step of run `run` changed, by the record `seq`.
    Step {
        /// The run.
        run: String,
        /// The record that changed it.
        seq: u64,
        /// The step, as JSON.
        json: Arc<str>,
    },
}

/// The rows and the subscribers, under one lock.
#[derive(Default)]
struct Shared {
    rows: BTreeMap<String, Arc<RunRowJson>>,
    subscribers: Vec<SyncSender<Change>>,
}

/// The fan-out point between the follower thread and the connections.
#[derive(Default)]
pub(crate) struct Hub {
    shared: Mutex<Shared>,
}

impl Hub {
    /// Registers a subscriber; returns its queue and every row as of now.
    pub(crate) fn subscribe(&self) -> (Receiver<Change>, Vec<Arc<RunRowJson>>) {
        let (tx, rx) = sync_channel(QUEUE);
        let mut shared = self.lock();
        shared.subscribers.push(tx);
        (rx, shared.rows.values().cloned().collect())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        // A panic elsewhere while holding the lock leaves plain data behind; keep serving it.
        self.shared.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sends `change` to every subscriber, dropping those that left or fell behind; a row
    /// change also updates the rows.
    fn publish(&self, change: Change) {
        let mut shared = self.lock();
        match &change {
            Change::Row(row) => {
                shared.rows.insert(row.id.clone(), Arc::clone(row));
            }
            Change::Removed(id) => {
                shared.rows.remove(id);
            }
            Change::Step { .. } => {}
        }
        shared
            .subscribers
            .retain(|tx| match tx.try_send(change.clone()) {
                Ok(()) => true,
                Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => false,
            });
    }
}

/// A run the follower knows.
struct Followed {
    info: RunInfo,
    /// Set while the run can change.
    follow: Option<Box<dyn Follow>>,
    /// The tail of its timeline (the steps records can still change).
    timeline: Timeline,
    row: Arc<RunRowJson>,
}

/// Follows the runs of `store` and publishes their changes to `hub`.
pub(crate) struct Follower {
    hub: Arc<Hub>,
    runs: BTreeMap<String, Followed>,
}

impl Follower {
    /// A follower that knows no run yet.
    pub(crate) fn new(hub: Arc<Hub>) -> Follower {
        Follower {
            hub,
            runs: BTreeMap::new(),
        }
    }

    /// Polls `store` every `interval`, forever (the server's life). A failed tick is retried
    /// at the next one: the store may be busy or a run half-deleted.
    pub(crate) fn run(mut self, store: &dyn Store, interval: Duration) -> ! {
        loop {
            std::thread::sleep(interval);
            let _ = self.tick(store);
        }
    }

    /// One pass: new and deleted runs, then the news of every unfinished one.
    pub(crate) fn tick(&mut self, store: &dyn Store) -> Result<(), CliError> {
        let ids = store.run_ids().map_err(|e| store_error(e, "(all runs)"))?;
        let gone: Vec<String> = self
            .runs
            .keys()
            .filter(|id| ids.binary_search(id).is_err())
            .cloned()
            .collect();
        for id in gone {
            self.runs.remove(&id);
            self.hub.publish(Change::Removed(id));
        }
        let queued = store
            .queued_runs()
            .map_err(|e| store_error(e, "(all runs)"))?;
        let now = now();
        for id in ids {
            if dloop_core::run_id::RunId::parse(&id).is_err() {
                continue;
            }
            if !self.runs.contains_key(&id) {
                // A run that cannot be read yet (being created) is tried again next tick.
                if let Ok(followed) = discover(store, &id, now) {
                    self.hub.publish(Change::Row(Arc::clone(&followed.row)));
                    self.runs.insert(id.clone(), followed);
                }
                continue;
            }
            let Some(followed) = self.runs.get_mut(&id) else {
                continue;
            };
            if followed.follow.is_none() {
                continue;
            }
            // One run that cannot be read now (being deleted, damaged) does not hold up the
            // others; it is tried again next tick.
            if let Ok(changes) = update(store, &id, followed, &queued, now) {
                for change in changes {
                    self.hub.publish(change);
                }
            }
        }
        Ok(())
    }
}

/// Reads a run the follower has not seen: its summary, and for an unfinished run its whole
/// timeline once (the steps still running need their start) and a follow from there.
fn discover(store: &dyn Store, id: &str, now: dloop_core::Timestamp) -> Result<Followed, CliError> {
    let mut info = load_summary(store, id)?;
    let (follow, timeline) = if info.state.status.is_finished() {
        (None, Timeline::default())
    } else {
        // Only the last steps can still change.
        let mut timeline = super::api::timeline(store, id, super::api::Window::newest(2))?;
        // The records read for the timeline may be newer than the summary: fold them in.
        for record in store
            .records_from(id, info.state.last_seq + 1)
            .map_err(|e| store_error(e, id))?
        {
            let record = record.map_err(|e| store_error(e, id))?;
            if record.seq > timeline.last_seq {
                timeline.feed(&record);
            }
            apply(&mut info.state, &record);
        }
        let follow = store
            .follow(id, timeline.last_seq.max(info.state.last_seq))
            .map_err(|e| store_error(e, id))?;
        trim(&mut timeline);
        (Some(follow), timeline)
    };
    let row = Arc::new(RunRowJson::from_info(&info, now));
    Ok(Followed {
        info,
        follow,
        timeline,
        row,
    })
}

/// Folds `record` into `state` unless the state already holds it.
fn apply(state: &mut RunState, record: &dloop_core::Record) {
    if record.seq > state.last_seq {
        state.apply(record);
    }
}

/// Keeps the last steps only: older ones can no longer change.
fn trim(timeline: &mut Timeline) {
    let extra = timeline.steps.len().saturating_sub(2);
    timeline.steps.drain(..extra);
}

/// Reads a followed run's new records and liveness; returns the changes to publish.
fn update(
    store: &dyn Store,
    id: &str,
    followed: &mut Followed,
    queued: &[String],
    now: dloop_core::Timestamp,
) -> Result<Vec<Change>, CliError> {
    let mut changes = Vec::new();
    // Liveness before the log: a runner that ends between the two reads leaves its last
    // records for this pass, and its row is right at the next.
    let live = store.is_live(id).map_err(|e| store_error(e, id))?;
    let Some(follow) = followed.follow.as_mut() else {
        return Ok(changes);
    };
    let records = follow.poll().map_err(|e| store_error(e, id))?;
    for record in &records {
        apply(&mut followed.info.state, record);
        if let Some(index) = followed.timeline.feed(record) {
            let step = &followed.timeline.steps[index];
            let json = serde_json::to_string(step).expect("wire types always serialize");
            changes.push(Change::Step {
                run: id.to_owned(),
                seq: record.seq,
                json: json.into(),
            });
        }
    }
    trim(&mut followed.timeline);
    followed.info.live = live;
    followed.info.queued = !live && queued.binary_search_by(|q| q.as_str().cmp(id)).is_ok();
    let row = RunRowJson::from_info(&followed.info, now);
    // A live run's clock alone does not make a change: the page runs it on.
    let changed = RunRowJson {
        elapsed_ms: followed.row.elapsed_ms,
        ..row.clone()
    } != *followed.row;
    if changed {
        followed.row = Arc::new(row);
        changes.push(Change::Row(Arc::clone(&followed.row)));
    }
    if followed.info.state.status.is_finished() {
        followed.follow = None;
    }
    Ok(changes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: &str, step: u64) -> Arc<RunRowJson> {
        Arc::new(RunRowJson {
            id: id.to_owned(),
            loop_name: "l".to_owned(),
            status: "running",
            label: "running".to_owned(),
            group: "live",
            reason: None,
            state: Some("a".to_owned()),
            step,
            started_at: "2026-01-01T00:00:00.000Z".to_owned(),
            elapsed_ms: 0,
            live: true,
            resumable: false,
            cost_usd: 0.0,
            tokens_in: 0,
            tokens_out: 0,
        })
    }

    #[test]
    fn a_subscriber_gets_the_rows_then_every_change_after_them() {
        let hub = Hub::default();
        hub.publish(Change::Row(row("a", 1)));
        let (changes, rows) = hub.subscribe();
        assert_eq!(rows.len(), 1);
        hub.publish(Change::Row(row("a", 2)));
        hub.publish(Change::Removed("a".to_owned()));
        assert!(matches!(changes.try_recv(), Ok(Change::Row(r)) if r.step == 2));
        assert!(matches!(changes.try_recv(), Ok(Change::Removed(id)) if id == "a"));
        let (_, rows) = hub.subscribe();
        assert!(rows.is_empty(), "a removed run leaves the rows");
    }

    #[test]
    fn a_subscriber_that_falls_behind_or_leaves_is_dropped() {
        let hub = Hub::default();
        let (slow, _) = hub.subscribe();
        let (gone, _) = hub.subscribe();
        drop(gone);
        for step in 0..=QUEUE as u64 {
            hub.publish(Change::Row(row("a", step)));
        }
        assert!(hub.lock().subscribers.is_empty());
        // The slow one keeps what it had; its end tells its page to reconnect.
        assert_eq!(slow.try_iter().count(), QUEUE);
        assert!(matches!(
            slow.try_recv(),
            Err(std::sync::mpsc::TryRecvError::Disconnected)
        ));
    }
}
