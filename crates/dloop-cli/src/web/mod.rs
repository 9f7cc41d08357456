//! `dloop serve`'s web view: a small HTTP/1.1 server over the project's runs, with the page
//! (plain HTML, CSS and JS in `assets/`, embedded with `include_str!`: no build step, no CDN)
//! and its JSON API and live feed.
//!
//! # Why a hand-written server
//! The view serves one user's browser a few requests a second. `std::net` with a thread per
//! connection does that in a few hundred lines with no new dependency, where axum would add
//! hyper, http, tower and tokio's networking features (minutes of build on two cores, for
//! every engineer and every CI run). What a framework would give us is made explicit instead:
//! [`http`] bounds every request (head size, header count, body size) and refuses anything
//! malformed without panicking; each socket gets read and write timeouts; at most
//! [`MAX_CONNECTIONS`] connections are served at once (more get a 503); a panic in one
//! connection's thread ends that connection only.
//!
//! # Modules
//! - [`http`]: parsing a request, writing a response.
//! - [`access`]: loopback `Host` check, access token, CSRF and origin checks.
//! - [`routes`]: which request gets which answer; [`api`] builds the JSON, [`steps`] the
//!   timeline, [`control`] stops and resumes.
//! - [`hub`] follows the runs for the live feed; [`sse`] streams it to a page.

pub(crate) mod access;
pub(crate) mod api;
pub(crate) mod control;
pub(crate) mod http;
pub(crate) mod hub;
pub(crate) mod output_index;
pub(crate) mod routes;
pub(crate) mod sse;
pub(crate) mod steps;

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::project::Project;
use crate::storage::Storage;

/// Connections served at once; more are answered 503 and closed.
pub(crate) const MAX_CONNECTIONS: usize = 64;
/// How long a client may take to send its whole request (not per read: a client that sends a
/// byte at a time cannot hold a connection longer).
const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a write may block (a page that stopped reading its event stream).
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// How often the hub looks for new records: well inside the second a new step has to reach
/// the page.
const FOLLOW_INTERVAL: Duration = Duration::from_millis(100);

/// A running server's shared parts.
struct Server {
    site: routes::Site,
    hub: Arc<hub::Hub>,
    project: Project,
    open: AtomicUsize,
}

/// Counts an open connection for as long as it lives.
struct Slot<'a>(&'a AtomicUsize);

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Serves `listener` forever: starts the hub (its first pass done before the first request,
/// so the feed starts whole), then a thread per connection.
pub(crate) fn serve(
    listener: TcpListener,
    mut site: routes::Site,
    project: Project,
) -> Result<std::convert::Infallible, crate::error::CliError> {
    let hub = Arc::new(hub::Hub::default());
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let follower_hub = Arc::clone(&hub);
    let follower_project = project.clone();
    std::thread::Builder::new()
        .name("dloop-serve-hub".to_owned())
        .spawn(move || {
            // The store is opened in this thread: a store (and its follows) need not be Send.
            let storage = match Storage::for_project(&follower_project) {
                Ok(storage) => storage,
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                    return;
                }
            };
            let mut follower = hub::Follower::new(follower_hub);
            match follower.tick(storage.store()) {
                Ok(()) => {
                    let _ = ready_tx.send(Ok(()));
                    follower.run(storage.store(), FOLLOW_INTERVAL)
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                }
            }
        })
        .map_err(|e| crate::error::CliError::io("starting the live feed", e))?;
    match ready_rx.recv() {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(e),
        Err(_) => {
            return Err(crate::error::CliError::new(
                crate::error::ErrorKind::Internal,
                "the live feed ended before it started",
            ));
        }
    }
    site.outputs = Some(output_index::OutputIndex::start(project.clone())?);
    let server = Arc::new(Server {
        site,
        hub,
        project,
        open: AtomicUsize::new(0),
    });
    loop {
        let stream = match listener.accept() {
            Ok((stream, _)) => stream,
            // A client that left before we accepted, or too many open files: try the next,
            // after a pause so a lasting error does not spin a core.
            Err(_) => {
                std::thread::sleep(Duration::from_millis(20));
                continue;
            }
        };
        if server.open.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
            server.open.fetch_sub(1, Ordering::SeqCst);
            busy(stream);
            continue;
        }
        let spawned = std::thread::Builder::new()
            .name("dloop-serve-conn".to_owned())
            .spawn({
                let server = Arc::clone(&server);
                move || {
                    let _slot = Slot(&server.open);
                    connection(&server, stream);
                }
            });
        if spawned.is_err() {
            // The slot was taken for a thread that does not exist.
            server.open.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// Reads a socket until a deadline for the whole request: each read may wait only for the time
/// left.
struct DeadlineReader<'a> {
    stream: &'a TcpStream,
    deadline: Instant,
}

impl Read for DeadlineReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(std::io::ErrorKind::TimedOut.into());
        }
        self.stream.set_read_timeout(Some(left))?;
        (&mut &*self.stream).read(buf)
    }
}

/// Answers 503 to a connection over the limit.
fn busy(stream: TcpStream) {
    let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
    let response = http::Response::error(503, "too many connections");
    let _ = http::write_response(&stream, &response, false);
}

/// Serves one connection: one request, one answer.
fn connection(server: &Server, stream: TcpStream) {
    let _ = stream.set_write_timeout(Some(WRITE_TIMEOUT));
    let reader = DeadlineReader {
        stream: &stream,
        deadline: Instant::now() + READ_TIMEOUT,
    };
    let req = match http::read_request(reader) {
        Ok(req) => req,
        Err(bad) => {
            if let Some(response) = bad.response() {
                let _ = http::write_response(&stream, &response, false);
            }
            return;
        }
    };
    let head_only = req.method == http::Method::Head;
    if let Err(refusal) = server.site.access.check(&req) {
        let (status, message) = refusal.status();
        let _ = http::write_response(&stream, &http::Response::error(status, message), head_only);
        return;
    }
    // The page and its assets need no store (which may be a database connection).
    if let Some(response) = routes::static_answer(&server.site, &req) {
        let _ = http::write_response(&stream, &response, head_only);
        return;
    }
    let storage = match Storage::for_project(&server.project) {
        Ok(storage) => storage,
        Err(e) => {
            let response = http::Response::error(500, &format!("{:#}", e.source));
            let _ = http::write_response(&stream, &response, head_only);
            return;
        }
    };
    match routes::route(&server.site, storage.store(), &req) {
        routes::Answer::Response(response) => {
            let _ = http::write_response(&stream, &response, head_only);
        }
        routes::Answer::Events(_) if head_only => {
            let _ = http::write_event_stream_head(&stream);
        }
        routes::Answer::Events(run) => {
            let opened = sse::open(&stream, &server.hub, storage.store(), run.as_deref());
            // The hub carries the feed from here: the store (a database connection with the
            // PostgreSQL store) is not held for the page's life.
            drop(storage);
            // The feed runs until the page leaves; its end is not an error.
            if let Ok(opened) = opened {
                let _ = sse::follow(&stream, opened, run.as_deref());
            }
        }
    }
}
