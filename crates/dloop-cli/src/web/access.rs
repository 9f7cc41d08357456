//! Who may talk to `dloop serve`, and which requests may change anything.
//!
//! The model (README "Web view"):
//! - Bound to a loopback address, the server answers only requests whose `Host` names a
//!   loopback host (`127.0.0.1`, `localhost`, `[::1]`, with our port): a page on another site
//!   that rebinds its DNS name to 127.0.0.1 sends its own name and is refused (421).
//! - Bound to any other address, a token is required (the command refuses to start without
//!   one) and every request must carry it: the `dloop_token_PORT` cookie (set by a first visit
//!   to `/?token=T`), an `Authorization: Bearer T` header, or `X-Dloop-Token: T` (401 otherwise).
//!   A token given on a loopback bind is required the same way.
//! - Changes (stop, resume) exist only with `--allow-control`, only as POST, and only with the
//!   server's CSRF token (random per server process, embedded in the page) in the
//!   `X-Dloop-Csrf` header; a request whose `Origin` is not this server, or that a browser
//!   marks as cross-site, is refused (403). A cross-site form cannot set that header, and a
//!   cross-site `fetch` that sets it needs a CORS preflight this server never grants.
//!
//! Tokens are compared in constant time.

use std::net::SocketAddr;

use super::http::{Method, Request};

/// The cookie that carries the access token starts with this, then the server's port: cookies
/// are not kept apart by port, and two servers on one host must not overwrite each other's.
pub(crate) const TOKEN_COOKIE: &str = "dloop_token_";
/// The header that carries the CSRF token.
pub(crate) const CSRF_HEADER: &str = "x-dloop-csrf";

/// The access policy of one server.
#[derive(Debug, Clone)]
pub(crate) struct Access {
    /// The address the server listens on.
    pub(crate) bound: SocketAddr,
    /// The access token every request must carry, when there is one.
    pub(crate) token: Option<String>,
    /// The CSRF token of this server process.
    pub(crate) csrf: String,
    /// Whether stop and resume are served.
    pub(crate) allow_control: bool,
}

/// Why a request is refused before routing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// 421: the `Host` header is not a name of this loopback server.
    Host,
    /// 401: the access token is missing or wrong.
    Token,
    /// 403: a change without `--allow-control`, a missing or wrong CSRF token, or a foreign
    /// origin.
    Forbidden(&'static str),
}

impl Refusal {
    /// The status code and message.
    pub(crate) fn status(&self) -> (u16, &'static str) {
        match self {
            Refusal::Host => (421, "this server answers only to a loopback host name"),
            Refusal::Token => (401, "a valid access token is required"),
            Refusal::Forbidden(why) => (403, why),
        }
    }
}

impl Access {
    /// Checks a request's host and token (every request).
    pub(crate) fn check(&self, req: &Request) -> Result<(), Refusal> {
        if self.bound.ip().is_loopback() && !self.is_loopback_host(req.header("host")) {
            return Err(Refusal::Host);
        }
        if let Some(token) = &self.token {
            // Any carrier with the right token lets the request in: a browser still holding
            // the cookie of an earlier server on this port (another token) must be able to
            // follow `?token=` to replace it.
            let cookie = self.token_cookie();
            let mut given = req
                .cookies(&cookie)
                .chain(
                    req.headers_named("authorization")
                        .filter_map(|v| v.strip_prefix("Bearer ")),
                )
                .chain(req.headers_named("x-dloop-token"))
                .chain(req.param("token"));
            if !given.any(|g| same(g, token)) {
                return Err(Refusal::Token);
            }
        }
        Self::check_fetch_site(req)
    }

    /// Refuses what another site's page makes a browser send, except following a link to us:
    /// browsers label each request with `Sec-Fetch-Site` (absent from older browsers and
    /// scripts, which the other checks cover). Without this, any page the user visits could
    /// hold the server's connections with `<img src=".../api/events">` (each such request is
    /// otherwise a valid loopback request that streams forever), or time its answers.
    fn check_fetch_site(req: &Request) -> Result<(), Refusal> {
        match req.header("sec-fetch-site") {
            None | Some("same-origin" | "none") => Ok(()),
            Some(_) => {
                let navigation = req.header("sec-fetch-mode") == Some("navigate")
                    && matches!(req.method, Method::Get | Method::Head);
                if navigation {
                    Ok(())
                } else {
                    Err(Refusal::Forbidden("cross-site request"))
                }
            }
        }
    }

    /// The name of this server's token cookie.
    pub(crate) fn token_cookie(&self) -> String {
        format!("{TOKEN_COOKIE}{}", self.bound.port())
    }

    /// Checks that a change request may change anything: POST, `--allow-control`, the CSRF
    /// token, and a same-origin browser context.
    pub(crate) fn check_change(&self, req: &Request) -> Result<(), Refusal> {
        if req.method != Method::Post {
            return Err(Refusal::Forbidden("changes are POST requests"));
        }
        if !self.allow_control {
            return Err(Refusal::Forbidden(
                "read only: start `dloop serve --allow-control` to stop and resume runs",
            ));
        }
        if !req.header(CSRF_HEADER).is_some_and(|g| same(g, &self.csrf)) {
            return Err(Refusal::Forbidden("missing or wrong CSRF token"));
        }
        if req
            .header("sec-fetch-site")
            .is_some_and(|site| site == "cross-site")
        {
            return Err(Refusal::Forbidden("cross-site request"));
        }
        if let Some(origin) = req.header("origin") {
            let host = req.header("host").unwrap_or("");
            if origin != format!("http://{host}") {
                return Err(Refusal::Forbidden("foreign origin"));
            }
        }
        Ok(())
    }

    /// Whether `host` (a `Host` header) names this loopback server: a loopback name with our
    /// port (or without a port, which a client may omit only for port 80).
    fn is_loopback_host(&self, host: Option<&str>) -> bool {
        let Some(host) = host else {
            return false;
        };
        let (name, port) = match host.rsplit_once(':') {
            Some((name, port)) if !name.ends_with(':') && !port.ends_with(']') => {
                (name, Some(port))
            }
            _ => (host, None),
        };
        let port_ok = match port {
            // Digits only: `u16::from_str` would also take `+8470`.
            Some(port) if port.bytes().all(|b| b.is_ascii_digit()) => {
                port.parse::<u16>().ok() == Some(self.bound.port())
            }
            Some(_) => false,
            None => self.bound.port() == 80,
        };
        let name = name.to_ascii_lowercase();
        // The bound address itself (`--addr 127.0.0.2:PORT` is reached as 127.0.0.2).
        let bound = match self.bound.ip() {
            std::net::IpAddr::V4(ip) => ip.to_string(),
            std::net::IpAddr::V6(ip) => format!("[{ip}]"),
        };
        port_ok && (matches!(name.as_str(), "localhost" | "127.0.0.1" | "[::1]") || name == bound)
    }
}

/// Constant-time equality of two tokens (the length is not secret).
fn same(given: &str, expected: &str) -> bool {
    given.len() == expected.len()
        && given
            .bytes()
            .zip(expected.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

/// Whether `token` is acceptable as an access token: at least 16 characters, all of them
/// printable ASCII that a cookie or header carries as is.
pub(crate) fn is_valid_token(token: &str) -> bool {
    token.len() >= 16
        && token
            .bytes()
            .all(|b| b.is_ascii_graphic() && !matches!(b, b';' | b',' | b'"' | b'\\'))
}

/// A new random token (32 hex digits) from the kernel's random source.
pub(crate) fn random_token() -> std::io::Result<String> {
    use std::io::Read;
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::web::http::read_request;

    fn access(bound: &str, token: Option<&str>, allow_control: bool) -> Access {
        Access {
            bound: bound.parse().expect("addr"),
            token: token.map(str::to_owned),
            csrf: "c".repeat(32),
            allow_control,
        }
    }

    fn req(text: &str) -> Request {
        read_request(text.as_bytes()).expect("request")
    }

    #[test]
    fn loopback_binds_answer_loopback_host_names_only() {
        let a = access("127.0.0.1:4000", None, false);
        for host in [
            "127.0.0.1:4000",
            "localhost:4000",
            "LOCALHOST:4000",
            "[::1]:4000",
        ] {
            let r = req(&format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n"));
            assert_eq!(a.check(&r), Ok(()), "{host}");
        }
        for host in [
            "evil.example:4000",
            "127.0.0.1:4001",
            "127.0.0.1",
            "localhost.evil.example:4000",
            "[::1]",
        ] {
            let r = req(&format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n"));
            assert_eq!(a.check(&r), Err(Refusal::Host), "{host}");
        }
        assert_eq!(a.check(&req("GET / HTTP/1.1\r\n\r\n")), Err(Refusal::Host));
        for host in ["127.0.0.1:+4000", "127.0.0.1:4000x", "127.0.0.2:4000"] {
            let r = req(&format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n"));
            assert_eq!(a.check(&r), Err(Refusal::Host), "{host}");
        }
        // A server bound to another loopback address answers to that address.
        let other = access("127.0.0.2:4000", None, false);
        let r = req("GET / HTTP/1.1\r\nHost: 127.0.0.2:4000\r\n\r\n");
        assert_eq!(other.check(&r), Ok(()));
    }

    #[test]
    fn other_sites_may_link_to_the_page_but_not_fetch_from_it() {
        let a = access("127.0.0.1:4000", None, false);
        let host = "Host: 127.0.0.1:4000\r\n";
        for site in ["cross-site", "same-site"] {
            for (target, mode) in [
                ("/api/events", "no-cors"),
                ("/api/runs", "cors"),
                ("/", "no-cors"),
            ] {
                let r = req(&format!(
                    "GET {target} HTTP/1.1\r\n{host}Sec-Fetch-Site: {site}\r\nSec-Fetch-Mode: {mode}\r\n\r\n"
                ));
                assert!(
                    matches!(a.check(&r), Err(Refusal::Forbidden(_))),
                    "{site} {target}"
                );
            }
            let link = req(&format!(
                "GET / HTTP/1.1\r\n{host}Sec-Fetch-Site: {site}\r\nSec-Fetch-Mode: navigate\r\n\r\n"
            ));
            assert_eq!(a.check(&link), Ok(()), "{site} link");
        }
        for site in ["same-origin", "none"] {
            let r = req(&format!(
                "GET /api/events HTTP/1.1\r\n{host}Sec-Fetch-Site: {site}\r\nSec-Fetch-Mode: cors\r\n\r\n"
            ));
            assert_eq!(a.check(&r), Ok(()), "{site}");
        }
    }

    #[test]
    fn a_token_is_required_in_a_cookie_header_or_query() {
        let token = "t0123456789abcdef";
        let a = access("0.0.0.0:4000", Some(token), false);
        let host = "Host: 10.0.0.1:4000\r\n";
        assert_eq!(
            a.check(&req(&format!("GET / HTTP/1.1\r\n{host}\r\n"))),
            Err(Refusal::Token)
        );
        for carrier in [
            format!("Cookie: {TOKEN_COOKIE}4000={token}\r\n"),
            format!("Authorization: Bearer {token}\r\n"),
            format!("X-Dloop-Token: {token}\r\n"),
        ] {
            let r = req(&format!("GET / HTTP/1.1\r\n{host}{carrier}\r\n"));
            assert_eq!(a.check(&r), Ok(()), "{carrier}");
        }
        let r = req(&format!("GET /?token={token} HTTP/1.1\r\n{host}\r\n"));
        assert_eq!(a.check(&r), Ok(()));
        let r = req(&format!(
            "GET / HTTP/1.1\r\n{host}Cookie: {TOKEN_COOKIE}4000={token}x\r\n\r\n"
        ));
        assert_eq!(a.check(&r), Err(Refusal::Token));
        // A stale cookie (an earlier server's token) does not hide a good carrier.
        let stale = format!("Cookie: {TOKEN_COOKIE}4000=stale-0123456789abcdef\r\n");
        for good in [
            format!("GET /?token={token} HTTP/1.1\r\n{host}{stale}\r\n"),
            format!("GET / HTTP/1.1\r\n{host}{stale}Authorization: Bearer {token}\r\n\r\n"),
            format!(
                "GET / HTTP/1.1\r\n{host}Cookie: {TOKEN_COOKIE}4000=old; {TOKEN_COOKIE}4000={token}\r\n\r\n"
            ),
        ] {
            assert_eq!(a.check(&req(&good)), Ok(()), "{good}");
        }
    }

    #[test]
    fn changes_need_post_control_csrf_and_our_origin() {
        let csrf = "c".repeat(32);
        let host = "Host: 127.0.0.1:4000\r\n";
        let post = |extra: &str| req(&format!("POST /x HTTP/1.1\r\n{host}{extra}\r\n"));
        let read_only = access("127.0.0.1:4000", None, false);
        assert!(matches!(
            read_only.check_change(&post(&format!("X-Dloop-Csrf: {csrf}\r\n"))),
            Err(Refusal::Forbidden(_))
        ));
        let a = access("127.0.0.1:4000", None, true);
        assert_eq!(
            a.check_change(&post(&format!("X-Dloop-Csrf: {csrf}\r\n"))),
            Ok(())
        );
        assert_eq!(
            a.check_change(&post(&format!(
                "X-Dloop-Csrf: {csrf}\r\nOrigin: http://127.0.0.1:4000\r\n"
            ))),
            Ok(())
        );
        for bad in [
            String::new(),
            "X-Dloop-Csrf: wrong\r\n".to_owned(),
            format!("X-Dloop-Csrf: {csrf}\r\nOrigin: http://evil.example\r\n"),
            format!("X-Dloop-Csrf: {csrf}\r\nSec-Fetch-Site: cross-site\r\n"),
        ] {
            assert!(
                matches!(a.check_change(&post(&bad)), Err(Refusal::Forbidden(_))),
                "{bad}"
            );
        }
        let get = req(&format!(
            "GET /x HTTP/1.1\r\n{host}X-Dloop-Csrf: {csrf}\r\n\r\n"
        ));
        assert!(matches!(a.check_change(&get), Err(Refusal::Forbidden(_))));
    }

    #[test]
    fn tokens_are_checked_and_random_ones_differ() {
        assert!(is_valid_token("0123456789abcdef"));
        assert!(!is_valid_token("short"));
        assert!(!is_valid_token("0123456789abcdef;x"));
        assert!(!is_valid_token("0123456789abcdef x"));
        let (a, b) = (
            random_token().expect("random"),
            random_token().expect("random"),
        );
        assert_eq!(a.len(), 32);
        assert_ne!(a, b);
    }
}
