//! Finding runs: the store of a project, a RUN argument resolved to one run id, and what a
//! reader may say about a run (its status, `crashed` included).
//!
//! A RUN argument is a whole run id, a loop name (that loop's runs, newest first), or a unique
//! prefix of a run id, in that order of precedence. When a loop name matches several runs, the
//! command's filter (resumable, live, ...) keeps the ones it can act on: exactly one is taken,
//! none or several is an error that lists them.

use dloop_core::RunState;
use dloop_core::run_id::{RunId, RunMatch, match_runs};
use dloop_store::{Incomplete, RunMeta, RunSummary, Store, StoreError, StoreErrorKind};

use crate::error::{CliError, ErrorKind};

/// What a reader knows about one run.
#[derive(Debug, Clone)]
pub(crate) struct RunInfo {
    /// The run id.
    pub(crate) id: String,
    /// `run.json`, when readable.
    pub(crate) meta: Option<RunMeta>,
    /// The fold of its log.
    pub(crate) state: RunState,
    /// Whether a live process holds its lock.
    pub(crate) live: bool,
    /// Whether it waits in the store's queue for a worker (PostgreSQL store) and nobody
    /// holds it.
    pub(crate) queued: bool,
}

impl RunInfo {
    /// The status a user sees: the log's, except a `running` run that no process holds is
    /// `crashed` (resumable), and a run that waits for a worker is `queued`.
    pub(crate) fn status(&self) -> &'static str {
        if self.queued && !self.live && !self.state.status.is_finished() {
            return "queued";
        }
        self.state.status.observed(self.live)
    }

    /// While its agent waits out a rate limit (live or not: the wait resumes from the log):
    /// `waiting (rate limit, resumes HH:MM UTC)`.
    pub(crate) fn rate_limit_wait(&self) -> Option<String> {
        let until = self.state.rate_limit_until?;
        let waiting = self.state.status == dloop_core::state::RunStatus::Running
            && matches!(self.state.phase, dloop_core::state::Phase::Entered);
        let text = until.to_string();
        let clock = text.get(11..16)?;
        waiting.then(|| format!("waiting (rate limit, resumes {clock} UTC)"))
    }

    /// The scope wait of a live run in the queue (a dead waiter is `crashed`, not waiting).
    pub(crate) fn scope_wait(&self) -> Option<&dloop_core::state::ScopeWait> {
        self.state.scope_wait.as_ref().filter(|_| self.live)
    }

    /// The status as the human listings show it: [`RunInfo::status`], except that a live run
    /// waiting in the scope queue is `waiting (scope PATHS)`, and one waiting out a rate limit
    /// `waiting (rate limit, resumes HH:MM UTC)`.
    pub(crate) fn status_label(&self) -> String {
        if let Some(wait) = self.scope_wait() {
            return format!("waiting (scope {})", wait.scope.join(", "));
        }
        if self.live
            && let Some(text) = self.rate_limit_wait()
        {
            return text;
        }
        self.status().to_owned()
    }

    /// Whether `dloop resume` can continue it now.
    pub(crate) fn is_resumable(&self) -> bool {
        self.state.status.is_resumable_now(self.live)
    }
}

/// Reads one run (read only: nothing is modified, no lock taken).
pub(crate) fn load_info(store: &dyn Store, id: &str) -> Result<RunInfo, CliError> {
    let (state, _) = store.load_state(id).map_err(|e| store_error(e, id))?;
    let live = store.is_live(id).map_err(|e| store_error(e, id))?;
    let meta = store.read_meta(id).ok();
    let queued = is_queued(store, id, &state, live)?;
    Ok(RunInfo {
        id: id.to_owned(),
        meta,
        state,
        live,
        queued,
    })
}

/// Reads one run for a listing (`status`, `history`, `gc`): like [`load_info`] but without
/// `run.json` (it holds a copy of the definition; the loop name comes from the log or the id),
/// and without probing the lock of a finished run (nothing drives it; `live` is false). Keeps
/// `status` on 1,000 runs within its 100 ms budget.
pub(crate) fn load_summary(store: &dyn Store, id: &str) -> Result<RunInfo, CliError> {
    let (state, _) = store.load_state(id).map_err(|e| store_error(e, id))?;
    let live = if state.status.is_finished() {
        false
    } else {
        store.is_live(id).map_err(|e| store_error(e, id))?
    };
    let queued = is_queued(store, id, &state, live)?;
    Ok(RunInfo {
        id: id.to_owned(),
        meta: None,
        state,
        live,
        queued,
    })
}

/// Whether run `id` waits in the store's queue (asked only of a run nobody drives).
fn is_queued(store: &dyn Store, id: &str, state: &RunState, live: bool) -> Result<bool, CliError> {
    if live || state.status.is_finished() {
        return Ok(false);
    }
    let queued = store.queued_runs().map_err(|e| store_error(e, id))?;
    Ok(queued.binary_search_by(|q| q.as_str().cmp(id)).is_ok())
}

/// The runs of a store, for listings.
#[derive(Debug, Default)]
pub(crate) struct AllRuns {
    /// Every run that loads.
    pub(crate) runs: Vec<RunInfo>,
    /// Runs that cannot be read (a damaged log, a link), with why.
    pub(crate) unreadable: Vec<(String, CliError)>,
    /// Leftovers of a creation or deletion cut short: not runs.
    pub(crate) incomplete: Vec<Incomplete>,
}

/// Every run of the store; runs that cannot be read are kept apart so a listing can warn
/// about them without hiding the others.
pub(crate) fn load_all(store: &dyn Store) -> Result<AllRuns, CliError> {
    let list = store
        .list_runs()
        .map_err(|e| store_error(e, "(all runs)"))?;
    let queued = store
        .queued_runs()
        .map_err(|e| store_error(e, "(all runs)"))?;
    let runs = list
        .runs
        .into_iter()
        .filter(|summary| RunId::parse(&summary.id).is_ok())
        .map(|RunSummary { id, state, live }| RunInfo {
            queued: !live && queued.binary_search(&id).is_ok(),
            id,
            meta: None,
            state,
            live,
        })
        .collect();
    let unreadable = list
        .unreadable
        .into_iter()
        .map(|(id, e)| {
            let err = store_error(e, &id);
            (id, err)
        })
        .collect();
    Ok(AllRuns {
        runs,
        unreadable,
        incomplete: list.incomplete,
    })
}

/// Every run id of the store, parsed; folders that are not run ids are skipped.
pub(crate) fn run_ids(store: &dyn Store) -> Result<Vec<RunId>, CliError> {
    let ids = store.run_ids().map_err(|e| store_error(e, "(all runs)"))?;
    Ok(ids.iter().filter_map(|id| RunId::parse(id).ok()).collect())
}

/// Resolves `query` to one run id. `wanted` keeps the runs the command can act on when a
/// loop name matches several; `what` names them in errors ("resumable").
pub(crate) fn resolve(
    store: &dyn Store,
    query: &str,
    what: &str,
    wanted: &dyn Fn(&RunInfo) -> bool,
) -> Result<String, CliError> {
    let ids = run_ids(store)?;
    match match_runs(query, &ids) {
        RunMatch::One(id) => Ok(id.as_str().to_owned()),
        RunMatch::None => {
            // The 4-hex suffix alone (`78bf`) names a run when one id ends with it.
            let by_suffix: Vec<&RunId> = ids
                .iter()
                .filter(|id| {
                    query.len() == 4
                        && id
                            .as_str()
                            .rsplit('-')
                            .next()
                            .is_some_and(|suffix| suffix.eq_ignore_ascii_case(query))
                })
                .collect();
            if let [only] = by_suffix.as_slice() {
                return Ok(only.as_str().to_owned());
            }
            let close = dloop_core::diagnostic::suggest(query, ids.iter().map(|id| id.as_str()));
            Err(
                CliError::usage(format!("no run matches `{query}`")).with_hint(match close {
                    Some(close) => format!("did you mean {close}?"),
                    None => "`dloop status --all` lists the runs".to_owned(),
                }),
            )
        }
        RunMatch::Many(candidates) => {
            let is_loop_name = candidates.iter().all(|id| id.loop_name() == query);
            if !is_loop_name {
                return Err(CliError::usage(format!(
                    "`{query}` matches several runs: {}",
                    join_ids(candidates.iter().map(|id| id.as_str()))
                ))
                .with_hint("give more of the run id"));
            }
            // Several of the loop's runs: the command's filter must leave exactly one.
            pick_one(
                store,
                candidates.iter().map(|id| id.as_str()),
                wanted,
                &format!("loop `{query}` has no {what} run"),
                &format!("loop `{query}` has several {what} runs"),
                "name one by its run id",
            )
        }
    }
}

/// The one run among `ids` that `wanted` accepts; none or several is a usage error.
fn pick_one<'a>(
    store: &dyn Store,
    ids: impl Iterator<Item = &'a str>,
    wanted: &dyn Fn(&RunInfo) -> bool,
    none: &str,
    several: &str,
    several_hint: &str,
) -> Result<String, CliError> {
    let mut matching = Vec::new();
    for id in ids {
        let info = load_info(store, id)?;
        if wanted(&info) {
            matching.push(info.id);
        }
    }
    match matching.len() {
        1 => Ok(matching.remove(0)),
        0 => Err(CliError::usage(none).with_hint("`dloop status --all` lists the runs")),
        _ => Err(CliError::usage(format!(
            "{several}: {}",
            join_ids(matching.iter().map(String::as_str))
        ))
        .with_hint(several_hint)),
    }
}

/// Resolves RUN for a read-only command (`logs`, `inspect`): a loop name means that loop's
/// newest run by start time, whatever its status (ids of one second are not ordered by time).
pub(crate) fn resolve_newest(store: &dyn Store, query: &str) -> Result<String, CliError> {
    let ids = run_ids(store)?;
    if let RunMatch::Many(candidates) = match_runs(query, &ids)
        && candidates.iter().all(|id| id.loop_name() == query)
    {
        let mut newest: Option<RunInfo> = None;
        for id in candidates {
            let info = load_summary(store, id.as_str())?;
            if newest
                .as_ref()
                .is_none_or(|n| (info.state.started_at, &info.id) > (n.state.started_at, &n.id))
            {
                newest = Some(info);
            }
        }
        if let Some(info) = newest {
            return Ok(info.id);
        }
    }
    resolve(store, query, "", &|_| true)
}

/// The single run of the project that `wanted` accepts (for `dloop resume` without RUN).
pub(crate) fn resolve_only(
    store: &dyn Store,
    what: &str,
    wanted: &dyn Fn(&RunInfo) -> bool,
) -> Result<String, CliError> {
    let ids = run_ids(store)?;
    pick_one(
        store,
        ids.iter().map(|id| id.as_str()),
        wanted,
        &format!("there is no {what} run"),
        &format!("there are several {what} runs"),
        "name one: `dloop resume RUN`",
    )
}

fn join_ids<'a>(ids: impl Iterator<Item = &'a str>) -> String {
    ids.collect::<Vec<_>>().join(", ")
}

/// A store error as a CLI error, with the kind that picks the right exit code. Every kind is
/// named: a new one does not compile until someone chooses its code.
pub(crate) fn store_error(err: StoreError, run: &str) -> CliError {
    let (kind, hint) = store_kind(err.kind(), run);
    CliError {
        kind,
        source: anyhow::Error::new(err),
        hint,
    }
}

/// The CLI error kind and hint of a store error kind, for run `run`.
pub(crate) fn store_kind(kind: StoreErrorKind, run: &str) -> (ErrorKind, Option<String>) {
    match kind {
        StoreErrorKind::NotFound => (
            ErrorKind::Usage,
            Some("`dloop status --all` lists the runs".to_owned()),
        ),
        StoreErrorKind::AlreadyExists => (ErrorKind::Refused, None),
        StoreErrorKind::Busy => (
            ErrorKind::Refused,
            Some(format!("the run is live; `dloop stop {run}` stops it")),
        ),
        StoreErrorKind::Corrupt => (
            ErrorKind::Corrupt,
            Some("README \"What dloop repairs and what it refuses\" explains this".to_owned()),
        ),
        StoreErrorKind::Unsafe => (ErrorKind::Corrupt, None),
        StoreErrorKind::ClaimLost => (
            ErrorKind::Io,
            Some(format!(
                "another process may hold the run now; `dloop status` shows it, and `dloop \
                 resume {run}` continues it once nothing does"
            )),
        ),
        StoreErrorKind::Io => (ErrorKind::Io, None),
        StoreErrorKind::Internal => (ErrorKind::Internal, None),
    }
}
