//! The web view's routes: which request gets which answer.
//!
//! ```text
//! GET  /                            the runs list (the page; its script draws it)
//! GET  /runs/ID                     a run's page (the same page)
//! GET  /assets/app.js, style.css    the page's script and style, embedded in the binary
//! GET  /api/runs                    every run's row
//! GET  /api/runs/ID                 one run (`dloop inspect --json`)
//! GET  /api/runs/ID/steps           its timeline (?before=N&limit=M: a window of steps)
//! GET  /api/runs/ID/graph           its loop's states and routes
//! GET  /api/runs/ID/output/STEP     a slice of a step's output (?offset=N&limit=M)
//! GET  /api/events[?run=ID]         the live feed (server-sent events)
//! POST /api/runs/ID/stop|resume     with --allow-control and the CSRF header
//! ```
//!
//! A run id from a URL must parse as a run id and be one of the store's runs, else 404; it only
//! ever reaches the [`dloop_store::Store`], which knows where runs are. No route reads a file.

use dloop_store::Store;

use super::access::Access;
use super::api::{self, OUTPUT_LIMIT, OutputError};
use super::control::{self, Action};
use super::http::{Method, Request, Response};
use crate::error::ErrorKind;
use crate::render::run_json::RunJson;
use crate::runs::load_info;

/// The page, with `{{CSRF}}` and `{{CONTROL}}` to fill in.
const INDEX_HTML: &str = include_str!("assets/index.html");
const APP_JS: &str = include_str!("assets/app.js");
const STYLE_CSS: &str = include_str!("assets/style.css");

/// What a request turned into.
pub(crate) enum Answer {
    /// A whole response.
    Response(Response),
    /// The live feed for the run named (if any).
    Events(Option<String>),
}

/// What every request handler needs.
pub(crate) struct Site {
    /// Who may do what.
    pub(crate) access: Access,
    /// The page with this server's CSRF token and control setting filled in.
    pub(crate) index: String,
    /// The project root (where stop and resume run).
    pub(crate) root: std::path::PathBuf,
    /// The store URL in force, for stop and resume.
    pub(crate) store_url: Option<String>,
    /// Where each step's output lies, kept between requests (`None`: read from the log on
    /// each request).
    pub(crate) outputs: Option<super::output_index::OutputIndex>,
}

impl Site {
    /// A site for `access`.
    pub(crate) fn new(access: Access, root: std::path::PathBuf, store_url: Option<String>) -> Site {
        let index = INDEX_HTML.replace("{{CSRF}}", &access.csrf).replace(
            "{{CONTROL}}",
            if access.allow_control { "on" } else { "off" },
        );
        Site {
            access,
            index,
            root,
            store_url,
            outputs: None,
        }
    }
}

/// Answers `req` (already past [`Access::check`]).
pub(crate) fn route(site: &Site, store: &dyn Store, req: &Request) -> Answer {
    let segments: Vec<&str> = req.segments.iter().map(String::as_str).collect();
    let get = matches!(req.method, Method::Get | Method::Head);
    if !get {
        return Answer::Response(change(site, store, req, &segments));
    }
    if let Some(response) = static_answer(site, req) {
        return Answer::Response(response);
    }
    let response = match segments.as_slice() {
        ["api", "runs"] => match runs(store) {
            Ok(rows) => Response::json(200, &rows),
            Err(response) => response,
        },
        ["api", "events"] => match req.param("run") {
            None => return Answer::Events(None),
            Some(id) => match known_run(store, id) {
                Ok(()) => return Answer::Events(Some(id.to_owned())),
                Err(response) => response,
            },
        },
        ["api", "runs", id, rest @ ..] => match known_run(store, id) {
            Ok(()) => run_route(store, site, id, rest, req),
            Err(response) => response,
        },
        _ => Response::error(404, "no such page"),
    };
    Answer::Response(response)
}

/// The answer to a GET of the page or an asset (which need no store), or `None`.
pub(crate) fn static_answer(site: &Site, req: &Request) -> Option<Response> {
    if !matches!(req.method, Method::Get | Method::Head) {
        return None;
    }
    let segments: Vec<&str> = req.segments.iter().map(String::as_str).collect();
    Some(match segments.as_slice() {
        [] | ["runs", _] => page(site, req),
        ["assets", "app.js"] => Response::new(200, "text/javascript; charset=utf-8", APP_JS),
        ["assets", "style.css"] => Response::new(200, "text/css; charset=utf-8", STYLE_CSS),
        _ => return None,
    })
}

/// The page; a first visit with `?token=` (already checked) sets the cookie and comes back
/// without it, so the token leaves the address bar and the history.
fn page(site: &Site, req: &Request) -> Response {
    if let (Some(_), Some(token)) = (req.param("token"), &site.access.token) {
        let path: String = req
            .segments
            .iter()
            .map(|segment| format!("/{}", percent_encode(segment)))
            .collect();
        let path = if path.is_empty() {
            "/".to_owned()
        } else {
            path
        };
        return Response::new(303, "text/plain; charset=utf-8", "")
            .with_header("Location", path)
            .with_header(
                "Set-Cookie",
                format!(
                    "{}={token}; Path=/; HttpOnly; SameSite=Strict",
                    site.access.token_cookie()
                ),
            );
    }
    Response::new(200, "text/html; charset=utf-8", site.index.clone())
}

/// `segment` with everything but unreserved characters percent-encoded (for a `Location`).
fn percent_encode(segment: &str) -> String {
    segment
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Every run's row, newest first. Read from the store, not the hub, so the answer is what is
/// on disk at this moment.
fn runs(store: &dyn Store) -> Result<Vec<api::RunRowJson>, Response> {
    let all = crate::runs::load_all(store).map_err(|e| internal(&e))?;
    let now = crate::commands::status::now();
    let mut runs = all.runs;
    crate::commands::status::sort_newest_first(&mut runs);
    Ok(runs
        .iter()
        .map(|info| api::RunRowJson::from_info(info, now))
        .collect())
}

/// `/api/runs/ID/...`.
fn run_route(store: &dyn Store, site: &Site, id: &str, rest: &[&str], req: &Request) -> Response {
    let root = site.root.as_path();
    match rest {
        [] => match load_info(store, id) {
            Ok(info) => Response::json(200, &RunJson::from_info(&info)),
            Err(e) => internal(&e),
        },
        ["steps"] => {
            let number = |name: &str| match req.param(name) {
                None => Ok(None),
                Some(text) => text.parse::<u64>().map(Some).map_err(|_| name.to_owned()),
            };
            let (before, limit) = match (number("before"), number("limit")) {
                (Ok(before), Ok(limit)) => (before, limit),
                (Err(name), _) | (_, Err(name)) => {
                    return Response::error(400, &format!("`{name}` must be a number"));
                }
            };
            let window = api::Window {
                before,
                limit: limit
                    .unwrap_or(api::STEPS_WINDOW)
                    .clamp(1, api::STEPS_WINDOW_MAX),
            };
            match api::timeline(store, id, window) {
                Ok(timeline) => Response::json(200, &api::StepsJson::from_timeline(timeline)),
                Err(e) => internal(&e),
            }
        }
        ["graph"] => match api::graph(store, id) {
            Ok(graph) => Response::json(200, &graph),
            Err(e) => internal(&e),
        },
        ["output", step] => {
            let Ok(step) = step.parse::<u64>() else {
                return Response::error(400, "the step must be a number");
            };
            let number = |name: &str, default: u64| match req.param(name) {
                None => Ok(default),
                Some(text) => text.parse::<u64>().map_err(|_| name.to_owned()),
            };
            let (offset, limit) = match (number("offset", 0), number("limit", OUTPUT_LIMIT)) {
                (Ok(offset), Ok(limit)) => (offset, limit),
                (Err(name), _) | (_, Err(name)) => {
                    return Response::error(400, &format!("`{name}` must be a number"));
                }
            };
            let raw = match req.param("view") {
                None | Some("transcript") => false,
                Some("raw") => true,
                Some(_) => return Response::error(400, "`view` is raw or transcript"),
            };
            let query = api::OutputQuery {
                step,
                offset,
                limit,
                raw,
            };
            let locate = |id: &str, step: u64| match &site.outputs {
                Some(index) => index.find(id, step),
                None => super::output_index::Indexes::default().find(store, id, step),
            };
            match api::output(store, id, query, &locate, &|profile| {
                agent_base(root, profile)
            }) {
                Ok(output) => Response::json(200, &output),
                Err(OutputError::NoSuchStep) => {
                    Response::error(404, "the run has no output of that step")
                }
                Err(OutputError::Store(e)) => internal(&e),
            }
        }
        _ => Response::error(404, "no such page"),
    }
}

/// The CLI kind of runner profile `profile`: the project's config (read now, so an edit shows
/// without a restart), else the built-in names.
fn agent_base(root: &std::path::Path, profile: &str) -> Option<dloop_core::config::Base> {
    let from_config = dloop_runtime::actions::agents::Agents::load(root)
        .ok()
        .and_then(|agents| agents.profile(profile).map(|p| p.base));
    from_config.or_else(|| dloop_core::config::Base::from_name(profile))
}

/// POST routes: stop and resume.
fn change(site: &Site, store: &dyn Store, req: &Request, segments: &[&str]) -> Response {
    let ["api", "runs", id, action] = segments else {
        return Response::error(404, "no such page");
    };
    let Some(action) = Action::from_segment(action) else {
        return Response::error(404, "no such page");
    };
    if let Err(refusal) = site.access.check_change(req) {
        let (status, message) = refusal.status();
        return Response::error(status, message);
    }
    if let Err(response) = known_run(store, id) {
        return response;
    }
    let answer = control::run(action, id, &site.root, site.store_url.as_deref());
    Response::json(if answer.ok { 200 } else { 409 }, &answer)
}

/// `Ok` when `id` is a run id the store holds; a 404 otherwise (a malformed id included: it
/// cannot be a run).
fn known_run(store: &dyn Store, id: &str) -> Result<(), Response> {
    let not_found = || Response::error(404, "no such run");
    if dloop_core::run_id::RunId::parse(id).is_err() || dloop_store::validate_run_id(id).is_err() {
        return Err(not_found());
    }
    match store.run_ids() {
        Ok(ids) if ids.binary_search_by(|i| i.as_str().cmp(id)).is_ok() => Ok(()),
        Ok(_) => Err(not_found()),
        Err(e) => Err(internal(&crate::runs::store_error(e, id))),
    }
}

/// A failure of the store as a response: 404 for a run that went away, 500 otherwise.
fn internal(e: &crate::error::CliError) -> Response {
    let status = match e.kind {
        ErrorKind::Usage => 404,
        ErrorKind::Invalid
        | ErrorKind::Refused
        | ErrorKind::Io
        | ErrorKind::Corrupt
        | ErrorKind::Internal => 500,
    };
    Response::error(status, &format!("{:#}", e.source))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirect_paths_are_encoded() {
        assert_eq!(percent_encode("run-1_a.b~"), "run-1_a.b~");
        assert_eq!(percent_encode("a b/é"), "a%20b%2F%C3%A9");
    }
}
