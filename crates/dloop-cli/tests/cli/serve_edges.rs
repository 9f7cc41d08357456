//! `dloop serve` attacked: request shapes that smuggle or stall, `Host` and token variants,
//! requests another site's page makes a browser send, and the bounds on what a big run costs.
//! Each test names the defect it guards; the real server on port 0, a raw `TcpStream` client.

use crate::common::{project_with_loops, run_loop};
use crate::serve_client::Server;

/// A POST whose body came with its head (every client sends them together) was left waiting
/// for the body the head's reader had already buffered: no answer for 10 s, then a close.
#[test]
fn a_post_with_a_body_is_answered() {
    let p = project_with_loops();
    let id = run_loop(&p, &["quick"], 0);
    let server = Server::start(&p, &["--addr", "127.0.0.1:0"], &[]);
    let reply = server.send(&format!(
        "POST /api/runs/{id}/stop HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{{}}",
        server.host()
    ));
    assert_eq!(reply.status, 403, "{reply:?}");
    assert!(reply.body.contains("--allow-control"), "{}", reply.body);
}

/// Two `Content-Length`s (or a signed one) and two `Host`s were read by their first value;
/// a proxy reading the other would see another request.
#[test]
fn ambiguous_framing_and_hosts_are_refused() {
    let p = project_with_loops();
    let server = Server::start(&p, &["--addr", "127.0.0.1:0"], &[]);
    let host = format!("Host: {}\r\n", server.host());
    for raw in [
        format!(
            "POST /api/runs/x/stop HTTP/1.1\r\n{host}Content-Length: 0\r\nContent-Length: 5\r\n\r\nhello"
        ),
        format!("POST /api/runs/x/stop HTTP/1.1\r\n{host}Content-Length: +5\r\n\r\nhello"),
        format!("GET /api/runs HTTP/1.1\r\n{host}Host: evil.example\r\n\r\n"),
        format!(
            "GET /api/runs HTTP/1.1\r\n{host}Content-Length: 0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
        ),
    ] {
        let reply = server.send(&raw);
        assert_eq!(reply.status, 400, "{raw:?}: {reply:?}");
        assert!(reply.json().get("error").is_some());
    }
    let options = server.send(&format!("OPTIONS * HTTP/1.1\r\n{host}\r\n"));
    assert_eq!(options.status, 405, "{options:?}");
    assert_eq!(options.header("allow"), Some("GET, HEAD, POST"));
    let port = server.addr.port();
    let signed = server.send(&format!(
        "GET /api/runs HTTP/1.1\r\nHost: 127.0.0.1:+{port}\r\n\r\n"
    ));
    assert_eq!(signed.status, 421, "{signed:?}");
    assert_eq!(server.get("/api/runs").status, 200, "still serving");
}
