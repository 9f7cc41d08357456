//! A small, strict HTTP/1.1 layer for `dloop serve`: reading one request from a socket and
//! writing one response (or the head of an event stream).
//!
//! Invariants this file keeps, whatever a client sends:
//! - The request line and headers together are at most [`MAX_HEAD`] bytes and [`MAX_HEADERS`]
//!   lines; a body is at most [`MAX_BODY`] bytes and only with `Content-Length` (chunked bodies
//!   are refused). Anything bigger or malformed is an error, never a panic.
//! - The path is split on `/` *before* percent-decoding, so `%2F` can never make a separator;
//!   decoded segments that are empty, `.`, `..`, or hold a control character, `/` or `\` are
//!   refused. No route ever turns a segment into a file path anyway (see `routes.rs`).
//! - One request per connection (`Connection: close`): no keep-alive state to get wrong.

use std::io::{BufRead, BufReader, Read, Write};

/// The most bytes of request line plus headers.
pub(crate) const MAX_HEAD: usize = 16 * 1024;
/// The most header lines.
pub(crate) const MAX_HEADERS: usize = 64;
/// The largest request body (the control routes take none; a little slack for clients that
/// send `{}`).
pub(crate) const MAX_BODY: u64 = 4 * 1024;

/// The request methods the server knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Method {
    /// GET (and HEAD, answered without a body).
    Get,
    /// HEAD.
    Head,
    /// POST.
    Post,
}

/// One parsed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Request {
    /// The method.
    pub(crate) method: Method,
    /// The decoded path segments (`/api/runs/x` is `["api", "runs", "x"]`; `/` is `[]`).
    pub(crate) segments: Vec<String>,
    /// The decoded query pairs, in order.
    pub(crate) query: Vec<(String, String)>,
    /// Header names lowercased, values trimmed.
    pub(crate) headers: Vec<(String, String)>,
}

impl Request {
    /// The first header called `name` (lowercase).
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The values of every header called `name` (lowercase).
    pub(crate) fn headers_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> {
        self.headers
            .iter()
            .filter(move |(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The first query parameter called `name`.
    pub(crate) fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The value of cookie `name`, when the request carries it.
    #[cfg(test)]
    pub(crate) fn cookie<'a>(&'a self, name: &'a str) -> Option<&'a str> {
        self.cookies(name).next()
    }

    /// Every value of cookie `name` (a browser may hold several: another path, an older server
    /// on the same port).
    pub(crate) fn cookies<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> {
        self.headers_named("cookie")
            .flat_map(|v| v.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .filter(move |(n, _)| *n == name)
            .map(|(_, v)| v)
    }
}

/// Why a request could not be read; each maps to one status code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum BadRequest {
    /// 400: malformed (bad request line, bad header, bad percent-encoding, a traversal
    /// attempt in the path).
    Malformed(&'static str),
    /// 405: a method the server does not serve.
    Method,
    /// 413: too large a body.
    TooLarge,
    /// 431: too large a head.
    HeadTooLarge,
    /// The client went away or timed out before a whole head arrived: no answer.
    Gone,
}

impl BadRequest {
    /// The status code and reason to answer with (`None`: just close).
    pub(crate) fn status(&self) -> Option<(u16, &'static str)> {
        match self {
            BadRequest::Malformed(why) => Some((400, why)),
            BadRequest::Method => Some((405, "method not allowed")),
            BadRequest::TooLarge => Some((413, "request body too large")),
            BadRequest::HeadTooLarge => Some((431, "request head too large")),
            BadRequest::Gone => None,
        }
    }

    /// The response to send (`None`: just close). A 405 names the methods served, as RFC 9110
    /// 15.5.6 requires.
    pub(crate) fn response(&self) -> Option<Response> {
        let (status, message) = self.status()?;
        let response = Response::error(status, message);
        Some(match self {
            BadRequest::Method => response.with_header("Allow", "GET, HEAD, POST".to_owned()),
            _ => response,
        })
    }
}

/// Reads one request from `stream` (its read timeout set by the caller), body included and
/// discarded.
pub(crate) fn read_request(stream: impl Read) -> Result<Request, BadRequest> {
    let mut reader = BufReader::new(stream.take(MAX_HEAD as u64 + 1));
    let mut used = 0usize;
    let request_line = read_line(&mut reader, &mut used)?;
    let mut parts = request_line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(BadRequest::Malformed("bad request line"));
    };
    if version != "HTTP/1.1" && version != "HTTP/1.0" {
        return Err(BadRequest::Malformed("unsupported HTTP version"));
    }
    let method = match method {
        "GET" => Method::Get,
        "HEAD" => Method::Head,
        "POST" => Method::Post,
        _ => return Err(BadRequest::Method),
    };
    let mut headers = Vec::new();
    loop {
        let line = read_line(&mut reader, &mut used)?;
        if line.is_empty() {
            break;
        }
        if headers.len() == MAX_HEADERS {
            return Err(BadRequest::HeadTooLarge);
        }
        let Some((name, value)) = line.split_once(':') else {
            return Err(BadRequest::Malformed("bad header"));
        };
        if name.is_empty() || !name.bytes().all(is_token_byte) {
            return Err(BadRequest::Malformed("bad header name"));
        }
        headers.push((name.to_ascii_lowercase(), value.trim().to_owned()));
    }
    let (segments, query) = parse_target(target)?;
    let request = Request {
        method,
        segments,
        query,
        headers,
    };
    // Framing a request two ways is how requests are smuggled past a proxy: refuse every
    // ambiguity (RFC 9112 6.3, 3.2) rather than pick one reading.
    if request.header("transfer-encoding").is_some() {
        return Err(BadRequest::Malformed("chunked bodies are not accepted"));
    }
    if request.headers_named("host").count() > 1 {
        return Err(BadRequest::Malformed("more than one Host header"));
    }
    let lengths: Vec<&str> = request.headers_named("content-length").collect();
    let length = match (lengths.first(), lengths.get(1)) {
        (None, _) => 0,
        (Some(text), None) if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) => {
            text.parse::<u64>().map_err(|_| BadRequest::TooLarge)?
        }
        (Some(_), None) => return Err(BadRequest::Malformed("bad content-length")),
        (Some(_), Some(_)) => return Err(BadRequest::Malformed("more than one content-length")),
    };
    if length > MAX_BODY {
        return Err(BadRequest::TooLarge);
    }
    read_body(reader, length)?;
    Ok(request)
}

/// Reads and drops a body of `length` bytes: first what the head's reader already buffered
/// (a client sends head and body in one packet), then the rest from the socket (the head's own
/// limit is spent; the body has its own).
fn read_body<R: Read>(
    mut reader: BufReader<std::io::Take<R>>,
    length: u64,
) -> Result<(), BadRequest> {
    let buffered = (reader.buffer().len() as u64).min(length);
    reader.consume(buffered as usize);
    let rest = length - buffered;
    if rest == 0 {
        return Ok(());
    }
    let mut body = reader.into_inner().into_inner().take(rest);
    let read = std::io::copy(&mut body, &mut std::io::sink()).map_err(|_| BadRequest::Gone)?;
    if read < rest {
        // The client closed before its whole body came.
        return Err(BadRequest::Gone);
    }
    Ok(())
}

/// One CRLF- (or LF-) terminated line of the head, counted against [`MAX_HEAD`].
fn read_line(reader: &mut impl BufRead, used: &mut usize) -> Result<String, BadRequest> {
    let mut bytes = Vec::new();
    let n = reader
        .read_until(b'\n', &mut bytes)
        .map_err(|_| BadRequest::Gone)?;
    *used += n;
    if *used > MAX_HEAD {
        return Err(BadRequest::HeadTooLarge);
    }
    if n == 0 || bytes.last() != Some(&b'\n') {
        return Err(BadRequest::Gone);
    }
    bytes.pop();
    if bytes.last() == Some(&b'\r') {
        bytes.pop();
    }
    if bytes.iter().any(|b| b.is_ascii_control() && *b != b'\t') {
        return Err(BadRequest::Malformed("control character in the head"));
    }
    String::from_utf8(bytes).map_err(|_| BadRequest::Malformed("the head is not UTF-8"))
}

/// RFC 9110 token characters (header names).
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Decoded query pairs, in order.
type Query = Vec<(String, String)>;

/// Splits an origin-form target into decoded path segments and query pairs.
pub(crate) fn parse_target(target: &str) -> Result<(Vec<String>, Query), BadRequest> {
    if !target.starts_with('/') || target.starts_with("//") {
        return Err(BadRequest::Malformed("the target must be a path"));
    }
    let (path, query) = match target.split_once('?') {
        Some((path, query)) => (path, query),
        None => (target, ""),
    };
    let path = path.split_once('#').map_or(path, |(p, _)| p);
    let mut segments = Vec::new();
    for raw in path[1..].split('/') {
        if raw.is_empty() {
            // `/` itself, or a trailing slash; `a//b` is refused below by position.
            continue;
        }
        let segment = decode(raw, false)?;
        let forbidden = segment == "."
            || segment == ".."
            || segment
                .chars()
                .any(|c| c.is_control() || c == '/' || c == '\\');
        if forbidden {
            return Err(BadRequest::Malformed("a path segment is not allowed"));
        }
        segments.push(segment);
    }
    if path.contains("//") {
        return Err(BadRequest::Malformed("empty path segment"));
    }
    let mut pairs = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        pairs.push((decode(name, true)?, decode(value, true)?));
    }
    Ok((segments, pairs))
}

/// Percent-decodes `text` (`+` is a space in queries); the result must be UTF-8.
fn decode(text: &str, plus_is_space: bool) -> Result<String, BadRequest> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                // Two hex digits exactly: `from_str_radix` alone would take `%+1`.
                let hex = bytes
                    .get(i + 1..i + 3)
                    .filter(|h| h.iter().all(u8::is_ascii_hexdigit))
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or(BadRequest::Malformed("bad percent-encoding"))?;
                out.push(hex);
                i += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| BadRequest::Malformed("bad percent-encoding"))
}

/// A whole response.
#[derive(Debug)]
pub(crate) struct Response {
    /// The status code.
    pub(crate) status: u16,
    /// The `Content-Type`.
    pub(crate) content_type: &'static str,
    /// Extra headers (`Set-Cookie`, `Location`).
    pub(crate) headers: Vec<(&'static str, String)>,
    /// The body.
    pub(crate) body: Vec<u8>,
}

impl Response {
    /// A response with `body` of type `content_type`.
    pub(crate) fn new(status: u16, content_type: &'static str, body: impl Into<Vec<u8>>) -> Self {
        Response {
            status,
            content_type,
            headers: Vec::new(),
            body: body.into(),
        }
    }

    /// A JSON body.
    pub(crate) fn json<T: serde::Serialize>(status: u16, value: &T) -> Response {
        let body = serde_json::to_vec(value).expect("wire types always serialize");
        Response::new(status, "application/json", body)
    }

    /// An error as `{"error": message}`.
    pub(crate) fn error(status: u16, message: &str) -> Response {
        Response::json(status, &serde_json::json!({ "error": message }))
    }

    /// Adds a header.
    pub(crate) fn with_header(mut self, name: &'static str, value: String) -> Response {
        self.headers.push((name, value));
        self
    }
}

/// The reason phrase of `status`.
fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        202 => "Accepted",
        303 => "See Other",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        413 => "Content Too Large",
        421 => "Misdirected Request",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Error",
    }
}

/// Headers every response carries: no caching of live data, no sniffing, no framing, and a
/// content policy that lets the page load only its own script and style (no inline script, so
/// even markup smuggled into the page could not run).
const COMMON_HEADERS: &str = "Cache-Control: no-store\r\n\
    X-Content-Type-Options: nosniff\r\n\
    X-Frame-Options: DENY\r\n\
    Referrer-Policy: no-referrer\r\n\
    Content-Security-Policy: default-src 'none'; script-src 'self'; style-src 'self'; \
    img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; \
    frame-ancestors 'none'\r\n\
    Connection: close\r\n";

/// Writes `response` (without its body for HEAD).
pub(crate) fn write_response(
    mut out: impl Write,
    response: &Response,
    head_only: bool,
) -> std::io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n{COMMON_HEADERS}",
        response.status,
        reason(response.status),
        response.content_type,
        response.body.len()
    );
    for (name, value) in &response.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    out.write_all(head.as_bytes())?;
    if !head_only {
        out.write_all(&response.body)?;
    }
    out.flush()
}

/// Writes the head of a server-sent event stream.
pub(crate) fn write_event_stream_head(mut out: impl Write) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n{COMMON_HEADERS}X-Accel-Buffering: no\r\n\r\n"
    );
    out.write_all(head.as_bytes())?;
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Request, BadRequest> {
        read_request(text.as_bytes())
    }

    #[test]
    fn a_plain_get_parses() {
        let req = parse(
            "GET /api/runs/a-1?offset=10&x=a%20b+c HTTP/1.1\r\nHost: 127.0.0.1:1\r\n\
             Cookie: a=1; dloop_token=t\r\n\r\n",
        )
        .expect("parses");
        assert_eq!(req.method, Method::Get);
        assert_eq!(req.segments, ["api", "runs", "a-1"]);
        assert_eq!(req.param("offset"), Some("10"));
        assert_eq!(req.param("x"), Some("a b c"));
        assert_eq!(req.header("host"), Some("127.0.0.1:1"));
        assert_eq!(req.cookie("dloop_token"), Some("t"));
        assert_eq!(parse("GET / HTTP/1.0\n\n").expect("root").segments.len(), 0);
    }

    #[test]
    fn traversal_and_encoded_separators_are_refused() {
        for target in [
            "/..",
            "/api/runs/..",
            "/api/runs/%2e%2e",
            "/api/runs/%2E%2e/x",
            "/api/runs/a%2Fb",
            "/api/runs/a%5cb",
            "/api/runs/%00",
            "/./x",
            "//etc/passwd",
            "/a//b",
            "etc/passwd",
            "http://evil/x",
            "/a%zz",
            "/a%c3",
        ] {
            let result = parse(&format!("GET {target} HTTP/1.1\r\n\r\n"));
            assert!(
                matches!(result, Err(BadRequest::Malformed(_))),
                "{target}: {result:?}"
            );
        }
    }

    #[test]
    fn garbage_is_an_error_never_a_panic() {
        let cases: &[&[u8]] = &[
            b"",
            b"\r\n\r\n",
            b"GET\r\n\r\n",
            b"GET / HTTP/2\r\n\r\n",
            b"GET / HTTP/1.1 extra\r\n\r\n",
            b"BREW / HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1\r\nno colon\r\n\r\n",
            b"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n",
            b"GET / HTTP/1.1\r\nX: \x01\r\n\r\n",
            b"GET / HTTP/1.1\r\nX: \xff\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x",
            b"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: 99999999\r\n\r\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        ];
        for case in cases {
            assert!(
                read_request(*case).is_err(),
                "{:?}",
                String::from_utf8_lossy(case)
            );
        }
        assert_eq!(
            parse("BREW / HTTP/1.1\r\n\r\n").unwrap_err(),
            BadRequest::Method
        );
        assert_eq!(
            parse("POST / HTTP/1.1\r\nContent-Length: 99999999\r\n\r\n").unwrap_err(),
            BadRequest::TooLarge
        );
    }

    #[test]
    fn heads_are_bounded() {
        let long = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(MAX_HEAD));
        assert_eq!(parse(&long).unwrap_err(), BadRequest::HeadTooLarge);
        let many: String = (0..=MAX_HEADERS).map(|i| format!("X-{i}: 1\r\n")).collect();
        let req = format!("GET / HTTP/1.1\r\n{many}\r\n");
        assert_eq!(parse(&req).unwrap_err(), BadRequest::HeadTooLarge);
    }

    #[test]
    fn a_small_body_is_read_and_dropped() {
        let req = parse("POST /x HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}").expect("parses");
        assert_eq!(req.method, Method::Post);
        // The body in a later packet than the head: read from the stream, not the buffer.
        let head = b"POST /x HTTP/1.1\r\nContent-Length: 4\r\n\r\nab".as_slice();
        let req = read_request(head.chain(b"cd".as_slice())).expect("parses");
        assert_eq!(req.method, Method::Post);
        assert_eq!(
            parse("POST /x HTTP/1.1\r\nContent-Length: 5\r\n\r\nab").unwrap_err(),
            BadRequest::Gone,
            "a body cut short"
        );
    }

    #[test]
    fn ambiguous_framing_is_refused() {
        for case in [
            "POST /x HTTP/1.1\r\nContent-Length: 0\r\nContent-Length: 5\r\n\r\nhello",
            "POST /x HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\n{}",
            "POST /x HTTP/1.1\r\nContent-Length: +2\r\n\r\n{}",
            "POST /x HTTP/1.1\r\nContent-Length: 2 \r\nX: y\r\nContent-length:2\r\n\r\n{}",
            "POST /x HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: 127.0.0.1:1\r\nHost: evil.example\r\n\r\n",
            "GET /a%+e HTTP/1.1\r\n\r\n",
            "GET /?a=%+e HTTP/1.1\r\n\r\n",
        ] {
            assert!(
                matches!(parse(case), Err(BadRequest::Malformed(_))),
                "{case:?}: {:?}",
                parse(case)
            );
        }
    }

    #[test]
    fn responses_carry_the_safety_headers() {
        let mut out = Vec::new();
        write_response(&mut out, &Response::error(404, "no such run"), false).expect("write");
        let text = String::from_utf8(out).expect("utf8");
        assert!(text.starts_with("HTTP/1.1 404 Not Found\r\n"), "{text}");
        assert!(text.contains("X-Content-Type-Options: nosniff"));
        assert!(text.contains("Content-Security-Policy: default-src 'none'"));
        assert!(text.ends_with("{\"error\":\"no such run\"}"));
    }
}
