//! One connection to the database that comes back after the server restarts or the network
//! drops: [`Conn::run`] reconnects and retries an operation for at most
//! [`Conn::retry_for`], a short backoff apart, when the failure is the connection's (closed,
//! I/O, the server shutting down or starting up), and returns any other failure at once.
//!
//! Invariant: an operation given to [`Conn::run`] may run more than once, so it must be safe to
//! repeat: idempotent, or able to see that an earlier attempt committed (the append checks
//! the log's last seq and compares the records it finds: `crate::handle`).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use postgres::error::SqlState;
use postgres::{Client, Config, NoTls, Statement};

use dloop_store::{Result, StoreError};

/// A database error as a store error, saying what was being done.
pub(crate) fn db_error(op: &str, e: postgres::Error) -> StoreError {
    StoreError::Database {
        what: format!("cannot {op}"),
        source: Some(Box::new(e)),
    }
}

/// Whether `e` is the connection's failure (worth a reconnect), not the statement's.
pub(crate) fn is_transient(e: &postgres::Error) -> bool {
    if e.is_closed() {
        return true;
    }
    if let Some(code) = e.code() {
        return [
            SqlState::ADMIN_SHUTDOWN,
            SqlState::CRASH_SHUTDOWN,
            SqlState::CANNOT_CONNECT_NOW,
            SqlState::CONNECTION_EXCEPTION,
            SqlState::CONNECTION_FAILURE,
            SqlState::CONNECTION_DOES_NOT_EXIST,
            SqlState::SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION,
            SqlState::T_R_SERIALIZATION_FAILURE,
            SqlState::T_R_DEADLOCK_DETECTED,
        ]
        .contains(code);
    }
    // No SQLSTATE: the socket failed (refused, reset) or the server went away mid-query.
    true
}

/// A reconnecting connection.
pub(crate) struct Conn {
    config: Config,
    client: Option<Client>,
    /// Statements prepared on `client` (hot paths only), dropped with it.
    prepared: HashMap<String, Statement>,
    /// How long an operation keeps retrying through connection failures.
    pub(crate) retry_for: Duration,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn")
            .field("connected", &self.client.is_some())
            .field("retry_for", &self.retry_for)
            .finish()
    }
}

impl Conn {
    /// A connection to `config`, made now (with the same retries as an operation).
    pub(crate) fn connect(config: &Config, retry_for: Duration) -> Result<Conn> {
        let mut conn = Conn::lazy(config, retry_for);
        conn.run("connect to the database", |_| Ok(()))?;
        Ok(conn)
    }

    /// A connection made at its first use.
    pub(crate) fn lazy(config: &Config, retry_for: Duration) -> Conn {
        Conn {
            config: config.clone(),
            client: None,
            prepared: HashMap::new(),
            retry_for,
        }
    }

    /// Runs `op` on a live connection, reconnecting and retrying through connection failures
    /// for at most [`Conn::retry_for`].
    pub(crate) fn run<T>(
        &mut self,
        what: &str,
        mut op: impl FnMut(&mut Client) -> Result<T, postgres::Error>,
    ) -> Result<T> {
        self.retry(what, |client, _| op(client))
    }

    /// [`Conn::run`] with `sql` prepared once per connection: a hot statement (a step's
    /// append) then costs one round trip, and no implicit transaction of its own for the
    /// prepare.
    pub(crate) fn run_prepared<T>(
        &mut self,
        what: &str,
        sql: &str,
        mut op: impl FnMut(&mut Client, &Statement) -> Result<T, postgres::Error>,
    ) -> Result<T> {
        self.retry(what, |client, prepared| {
            let statement = match prepared.get(sql) {
                Some(statement) => statement.clone(),
                None => {
                    let statement = client.prepare(sql)?;
                    prepared.insert(sql.to_owned(), statement.clone());
                    statement
                }
            };
            op(client, &statement)
        })
    }

    fn retry<T>(
        &mut self,
        what: &str,
        mut op: impl FnMut(&mut Client, &mut HashMap<String, Statement>) -> Result<T, postgres::Error>,
    ) -> Result<T> {
        let deadline = Instant::now() + self.retry_for;
        let mut pause = Duration::from_millis(50);
        loop {
            let attempt = match self.client.as_mut() {
                Some(client) if !client.is_closed() => op(client, &mut self.prepared),
                _ => match self.config.connect(NoTls) {
                    Ok(client) => {
                        self.client = Some(client);
                        self.prepared.clear();
                        continue;
                    }
                    Err(e) => Err(e),
                },
            };
            match attempt {
                Ok(value) => return Ok(value),
                Err(e) if is_transient(&e) && Instant::now() < deadline => {
                    self.client = None;
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_secs(1));
                }
                Err(e) => {
                    if is_transient(&e) {
                        self.client = None;
                    }
                    return Err(db_error(what, e));
                }
            }
        }
    }
}
