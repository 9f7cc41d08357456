//! `dloop serve`: the web view of the project's runs (the server is [`crate::web`]). This file
//! owns the command line: where to listen, the token a non-loopback address requires, and the
//! URL printed on stdout (the first line, so scripts and tests can read it).

use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};

use clap::Args;

use crate::commands::{CmdResult, Ctx};
use crate::error::{CliError, ErrorKind};
use crate::project::Project;
use crate::web;
use crate::web::access::{Access, is_valid_token, random_token};

/// Serve a local web view of the runs: the runs list, each run's states diagram, timeline and
/// step output, updated live. Read only unless --allow-control; bound to 127.0.0.1 unless
/// --addr says otherwise, and then a token is required.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  dloop serve                              http://127.0.0.1:8470/ (prints the URL)
  dloop serve --addr 127.0.0.1:0           any free port
  dloop serve --allow-control              with stop and resume buttons
  DLOOP_SERVE_TOKEN=$(openssl rand -hex 16) dloop serve --addr 0.0.0.0:8470")]
pub(crate) struct ServeArgs {
    /// Listen on ADDR (IP:PORT; port 0 picks a free one). An address other than loopback
    /// needs --token
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8470")]
    pub(crate) addr: String,
    /// Require this token on every request (at least 16 characters): open `URL?token=TOKEN`
    /// once and the browser keeps it in a cookie; scripts send `Authorization: Bearer TOKEN`
    #[arg(
        long,
        value_name = "TOKEN",
        env = "DLOOP_SERVE_TOKEN",
        hide_env_values = true
    )]
    pub(crate) token: Option<String>,
    /// Add stop and resume buttons (POST requests with the page's CSRF token)
    #[arg(long)]
    pub(crate) allow_control: bool,
}

/// Serves until killed (Ctrl-C).
pub(crate) fn cmd_serve(ctx: &Ctx, args: ServeArgs) -> CmdResult {
    let project = Project::require(&ctx.cwd)?;
    let addr = parse_addr(&args.addr)?;
    let token = args.token.filter(|t| !t.is_empty());
    if let Some(token) = &token
        && !is_valid_token(token)
    {
        return Err(CliError::usage(
            "the token must be at least 16 characters, printable, without spaces, `;`, `,`, `\"` or `\\`",
        )
        .with_hint("`openssl rand -hex 16` makes a good one"));
    }
    if !addr.ip().is_loopback() && token.is_none() {
        return Err(CliError::usage(format!(
            "--addr {addr} is not a loopback address: anyone who can reach it could read every \
             run's output, so it needs a token"
        ))
        .with_hint(
            "give --token TOKEN (or set DLOOP_SERVE_TOKEN), at least 16 characters; or serve on \
             127.0.0.1",
        ));
    }
    let listener = TcpListener::bind(addr).map_err(|e| {
        let kind = if e.kind() == std::io::ErrorKind::AddrInUse {
            ErrorKind::Refused
        } else {
            ErrorKind::Io
        };
        CliError::new(kind, format!("cannot listen on {addr}: {e}"))
            .with_hint("pick another port with --addr 127.0.0.1:PORT (0: any free port)")
    })?;
    let bound = listener
        .local_addr()
        .map_err(|e| CliError::io("reading the listening address", e))?;
    let csrf = random_token().map_err(|e| CliError::io("reading /dev/urandom", e))?;
    let access = Access {
        bound,
        token: token.clone(),
        csrf,
        allow_control: args.allow_control,
    };
    let store_url = crate::storage::store_url(&project)?;
    let site = web::routes::Site::new(access, project.root.clone(), store_url);
    let url = format!("http://{bound}/");
    ctx.ui.print(&format!("{url}\n"))?;
    let mode = if args.allow_control {
        "stop and resume allowed"
    } else {
        "read only"
    };
    ctx.ui.status(&format!(
        "serving the runs of {} at {url} ({mode}); Ctrl-C stops\n",
        project.root.display()
    ));
    if token.is_some() {
        ctx.ui.status(&format!(
            "open {url}?token=TOKEN once: the browser keeps the token in a cookie\n"
        ));
    }
    match web::serve(listener, site, project)? {}
}

/// `IP:PORT`, or `localhost:PORT` (which is 127.0.0.1: no name is looked up).
fn parse_addr(text: &str) -> Result<SocketAddr, CliError> {
    if let Some(port) = text.strip_prefix("localhost:")
        && let Ok(port) = port.parse::<u16>()
    {
        return Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port));
    }
    text.parse::<SocketAddr>().map_err(|_| {
        CliError::usage(format!("--addr `{text}` is not an address"))
            .with_hint("give IP:PORT, e.g. 127.0.0.1:8470 ([::1]:8470 for IPv6; port 0: any)")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        assert_eq!(
            parse_addr("localhost:80").expect("ok"),
            "127.0.0.1:80".parse().expect("addr")
        );
        assert!(parse_addr("[::1]:0").expect("ok").ip().is_loopback());
        assert!(!parse_addr("0.0.0.0:1").expect("ok").ip().is_loopback());
        for bad in [
            "",
            "127.0.0.1",
            "example.com:80",
            "localhost:x",
            "1.2.3.4:99999",
        ] {
            assert!(parse_addr(bad).is_err(), "{bad}");
        }
    }
}
