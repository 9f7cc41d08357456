//! `/api/events`: the live feed as server-sent events, one connection per page.
//!
//! The stream opens with a snapshot and then carries every change after it (the [`Hub`]
//! guarantees no gap), so a page that reconnects (EventSource does by itself) is whole again:
//! - `runs`: every row (an array of `/api/runs` rows), first;
//! - `timeline` (with `?run=ID`): that run's newest steps (as `/api/runs/ID/steps`) and the
//!   seq they reflect, second;
//! - `run`: one row that changed; `removed`: `{"id": ...}` of a deleted run;
//! - `step` (with `?run=ID`): one step of that run that changed (a `/api/runs/ID/steps` row).
//!
//! Every data line is one line of JSON (serde escapes newlines), so output text can never
//! forge an event. A comment every [`KEEPALIVE`] finds a page that left.

use std::io::Write;
use std::time::Duration;

use dloop_store::Store;

use super::api::StepsJson;
use super::hub::{Change, Hub};

/// How long the stream may be quiet before a keep-alive comment.
const KEEPALIVE: Duration = Duration::from_secs(15);

/// A feed whose snapshot was sent: what [`follow`] needs to carry on without the store.
pub(crate) struct Opened {
    changes: std::sync::mpsc::Receiver<Change>,
    /// Steps of the run up to this seq were in the snapshot.
    shown: u64,
}

/// Opens the feed on `out`: the head, then the snapshot (`runs`, and with `run`, a run id
/// already checked to exist, its `timeline`). The store is needed only for this: the caller
/// lets it go before [`follow`], so an open page does not hold a database connection.
pub(crate) fn open(
    mut out: impl Write,
    hub: &Hub,
    store: &dyn Store,
    run: Option<&str>,
) -> std::io::Result<Opened> {
    super::http::write_event_stream_head(&mut out)?;
    let (changes, mut rows) = hub.subscribe();
    rows.sort_by(|a, b| (&b.started_at, &b.id).cmp(&(&a.started_at, &a.id)));
    out.write_all(b"retry: 1000\n\n")?;
    let rows: Vec<&super::api::RunRowJson> = rows.iter().map(|r| &**r).collect();
    send(&mut out, "runs", &json(&rows))?;
    // Steps of `run` up to `shown` are in the snapshot; later ones come from the hub.
    let mut shown = 0;
    if let Some(id) = run {
        let window = super::api::Window::newest(super::api::STEPS_WINDOW);
        match super::api::timeline(store, id, window) {
            Ok(timeline) => {
                shown = timeline.last_seq;
                let steps = StepsJson::from_timeline(timeline);
                send(&mut out, "timeline", &json(&steps))?;
            }
            Err(e) => {
                let message = serde_json::json!({ "error": e.source.to_string() });
                send(&mut out, "problem", &json(&message))?;
            }
        }
    }
    Ok(Opened { changes, shown })
}

/// Streams every change after the snapshot to `out` until the page leaves (a write fails) or
/// the hub drops it.
pub(crate) fn follow(
    mut out: impl Write,
    opened: Opened,
    run: Option<&str>,
) -> std::io::Result<()> {
    let Opened { changes, mut shown } = opened;
    loop {
        match changes.recv_timeout(KEEPALIVE) {
            Ok(Change::Row(row)) => send(&mut out, "run", &json(&*row))?,
            Ok(Change::Removed(id)) => {
                send(&mut out, "removed", &json(&serde_json::json!({ "id": id })))?;
            }
            Ok(Change::Step { run: of, seq, json }) => {
                if Some(of.as_str()) == run && seq > shown {
                    shown = seq;
                    send(&mut out, "step", &json)?;
                }
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                out.write_all(b": keep-alive\n\n")?;
                out.flush()?;
            }
            // Dropped by the hub (too far behind): end; the page reconnects.
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return Ok(()),
        }
    }
}

fn json<T: serde::Serialize + ?Sized>(value: &T) -> String {
    serde_json::to_string(value).expect("wire types always serialize")
}

/// Writes one event. `data` is one line of JSON.
fn send(out: &mut impl Write, event: &str, data: &str) -> std::io::Result<()> {
    debug_assert!(!data.contains('\n'), "JSON from serde has no raw newline");
    write!(out, "event: {event}\ndata: {data}\n\n")?;
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_is_one_data_line() {
        let mut out = Vec::new();
        let text = json(&serde_json::json!({ "text": "a\nevent: forged\n\ndata: x" }));
        send(&mut out, "step", &text).expect("write");
        let written = String::from_utf8(out).expect("utf8");
        assert_eq!(written.matches('\n').count(), 3, "{written}");
        assert!(written.starts_with("event: step\ndata: {"));
    }
}
