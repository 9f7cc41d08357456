//! `dloop serve` attacked: request shapes that smuggle or stall, `Host` and token variants,
//! requests another site's page makes a browser send, and the bounds on what a big run costs.
//! Each test names the defect it guards; the real server on port 0, a raw `TcpStream` client.

use crate::common::{project_with_loops, run_loop};
use crate::serve_client::Server;

const TOKEN: &str = "0123456789abcdef-edge-token";

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

/// A browser still holding the cookie of an earlier server on this port (another token) was
/// refused even with the right `?token=`: the first carrier found was the only one checked.
#[test]
fn a_stale_token_cookie_does_not_lock_the_user_out() {
    let p = project_with_loops();
    let server = Server::start(&p, &["--addr", "0.0.0.0:0", "--token", TOKEN], &[]);
    let port = server.addr.port();
    let host = format!("Host: 192.0.2.7:{port}\r\n");
    let stale = format!("Cookie: dloop_token_{port}=an-older-servers-token\r\n");
    let visit = server.send(&format!(
        "GET /?token={TOKEN} HTTP/1.1\r\n{host}{stale}\r\n"
    ));
    assert_eq!(visit.status, 303, "{visit:?}");
    assert!(
        visit
            .header("set-cookie")
            .is_some_and(|c| c.contains(TOKEN))
    );
    let bearer = server.send(&format!(
        "GET /api/runs HTTP/1.1\r\n{host}{stale}Authorization: Bearer {TOKEN}\r\n\r\n"
    ));
    assert_eq!(bearer.status, 200, "{bearer:?}");
    let only_stale = server.send(&format!("GET /api/runs HTTP/1.1\r\n{host}{stale}\r\n"));
    assert_eq!(only_stale.status, 401);
}

/// `--addr 127.0.0.2:PORT` is loopback, so the Host check applied, but it knew only
/// 127.0.0.1, localhost and [::1]: the server refused its own address.
#[test]
fn a_server_on_another_loopback_address_answers_to_it() {
    let p = project_with_loops();
    let server = Server::start(&p, &["--addr", "127.0.0.2:0"], &[]);
    assert_eq!(server.addr.ip().to_string(), "127.0.0.2");
    let reply = server.send(&format!(
        "GET /api/runs HTTP/1.1\r\nHost: 127.0.0.2:{}\r\n\r\n",
        server.addr.port()
    ));
    assert_eq!(reply.status, 200, "{reply:?}");
    let evil = server.send(&format!(
        "GET /api/runs HTTP/1.1\r\nHost: evil.example:{}\r\n\r\n",
        server.addr.port()
    ));
    assert_eq!(evil.status, 421);
}

/// Any page the user visits could open `/api/events` (an `<img>`, a no-cors fetch): a valid
/// loopback request that streams forever and holds one of the server's 64 connections. A
/// browser marks such requests `Sec-Fetch-Site: cross-site`; only a link (a navigation)
/// may come from another site.
#[test]
fn another_sites_page_cannot_fetch_from_the_server() {
    let p = project_with_loops();
    let server = Server::start(&p, &["--addr", "127.0.0.1:0"], &[]);
    let host = format!("Host: {}\r\n", server.host());
    for (path, site, mode) in [
        ("/api/events", "cross-site", "no-cors"),
        ("/api/runs", "cross-site", "cors"),
        ("/api/runs", "same-site", "cors"),
        ("/assets/app.js", "cross-site", "no-cors"),
    ] {
        let status = server.status_of(&format!(
            "GET {path} HTTP/1.1\r\n{host}Sec-Fetch-Site: {site}\r\nSec-Fetch-Mode: {mode}\r\n\r\n"
        ));
        assert_eq!(status, 403, "{path} {site} {mode}");
    }
    let link = server.send(&format!(
        "GET / HTTP/1.1\r\n{host}Sec-Fetch-Site: cross-site\r\nSec-Fetch-Mode: navigate\r\nSec-Fetch-Dest: document\r\n\r\n"
    ));
    assert_eq!(link.status, 200, "a link from elsewhere opens the page");
    let own = server.send(&format!(
        "GET /api/runs HTTP/1.1\r\n{host}Sec-Fetch-Site: same-origin\r\nSec-Fetch-Mode: cors\r\n\r\n"
    ));
    assert_eq!(own.status, 200, "the page's own requests");
}

/// Each open page (its event stream) held the database connection its request opened, for
/// the page's life: ten tabs were ten idle PostgreSQL connections, and enough of them reach
/// the server's `max_connections`. The feed needs the store only for its snapshot.
#[test]
fn an_open_feed_holds_no_database_connection_needs_postgres() {
    let Some(pg) = dloop_store_pg::testing::TestServer::shared() else {
        return;
    };
    let url = pg.database();
    let p = project_with_loops();
    let out = p.dloop(&["run", "twostep", "--store", url.as_str()]);
    assert_eq!(out.code, 0, "{}", out.render());
    let server = Server::start(&p, &["--addr", "127.0.0.1:0", "--store", url.as_str()], &[]);
    let id = server.get_json("/api/runs")[0]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let mut client = postgres::Client::connect(&url, postgres::NoTls).expect("connect");
    let mut connections = || -> i64 {
        client
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()",
                &[],
            )
            .expect("count")
            .get(0)
    };
    let before = connections();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let mut feeds = Vec::new();
    for _ in 0..5 {
        let mut feed = server.events(&format!("/api/events?run={id}"));
        assert!(feed.until(deadline, "timeline", |_| true).is_some());
        feeds.push(feed);
    }
    // A request's connection closes as its thread ends: poll, never sleep.
    let settled = crate::common::poll(std::time::Duration::from_secs(30), || {
        (connections() <= before).then_some(())
    });
    assert!(
        settled.is_some(),
        "five open feeds hold {} connections more than none",
        connections() - before
    );
    assert_eq!(feeds.len(), 5);
}

/// A run of 610 steps between two states, paused by `max_steps`.
const PINGPONG: &str = "initial: a\nlimits:\n  max_steps: 610\nstates:\n  a:\n    shell: \"true\"\n    next: b\n  b:\n    shell: \"true\"\n    on: { success: a, failure: done }\n  done:\n    terminal: success\n";

/// The timeline was sent whole: a run of 100,000 records (25,000 steps) made a 7 MB
/// `timeline` event and `/steps` answer, and a page that redrew every row on each new step.
/// Now the newest 500 steps come first, `before=` pages back, and the path taken (for the
/// diagram) is sent whole.
#[test]
fn a_long_timeline_comes_in_windows_with_the_whole_path() {
    let p = crate::common::TestProject::new();
    p.write_loop("pingpong", PINGPONG);
    let out = p.dloop(&["run", "pingpong"]);
    assert_eq!(out.code, 3, "paused at max_steps: {}", out.render());
    let (id, _) = p.only_run();
    let server = Server::start(&p, &["--addr", "127.0.0.1:0"], &[]);
    let newest = server.get_json(&format!("/api/runs/{id}/steps"));
    let steps = newest["steps"].as_array().expect("steps");
    assert_eq!(steps.len(), 500);
    let earlier = newest["earlier"].as_u64().expect("earlier");
    assert_eq!(earlier, 110, "610 steps, the newest 500 sent");
    assert_eq!(steps.last().expect("last")["step"], 610);
    assert_eq!(newest["visited"], serde_json::json!(["a", "b"]));
    assert_eq!(newest["taken"], serde_json::json!([["a", "b"], ["b", "a"]]));

    let older = server.get_json(&format!("/api/runs/{id}/steps?before={earlier}&limit=500"));
    let older_steps = older["steps"].as_array().expect("steps");
    assert_eq!((older_steps.len(), &older["earlier"]), (110, &0.into()));
    assert_eq!(older_steps[0]["step"], 1);
    assert_eq!(
        older_steps.last().expect("last")["step"].as_u64(),
        steps[0]["step"].as_u64().map(|s| s - 1),
        "the pages meet"
    );
    let middle = server.get_json(&format!("/api/runs/{id}/steps?before=300&limit=10"));
    let numbers: Vec<u64> = middle["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .map(|s| s["step"].as_u64().expect("step"))
        .collect();
    assert_eq!(numbers, (291..=300).collect::<Vec<_>>());
    assert_eq!(middle["earlier"], 290);
    assert_eq!(
        server.get(&format!("/api/runs/{id}/steps?limit=x")).status,
        400
    );

    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let mut feed = server.events(&format!("/api/events?run={id}"));
    let timeline = feed
        .until(deadline, "timeline", |_| true)
        .expect("timeline");
    assert_eq!(timeline["steps"].as_array().map(Vec::len), Some(500));
    assert_eq!(timeline["earlier"], 110);
}

/// A loop whose first step prints, then waits for the file `gate`, then a second step.
const GATED_PRINT: &str = "initial: wait\nstates:\n  wait:\n    shell: \"echo before-gate; while [ ! -e gate ]; do sleep 0.05; done; echo after-gate\"\n    next: second\n  second:\n    shell: echo second-step\n    next: done\n  done:\n    terminal: success\n";

/// A page follows a running step's output in slices while the run moves on: the open step's
/// slice never runs past its end into the next step's bytes, and once it ends its slices are
/// whole and `complete`.
#[test]
fn output_slices_follow_a_live_run_across_its_steps() {
    let p = crate::common::TestProject::new();
    p.write_loop("gated", GATED_PRINT);
    let out = p.dloop(&["run", "gated", "-b"]);
    assert_eq!(out.code, 0, "{}", out.render());
    let id = out.stdout.trim().to_owned();
    let server = Server::start(&p, &["--addr", "127.0.0.1:0"], &[]);
    let limit = std::time::Duration::from_secs(60);
    let open = crate::common::poll(limit, || {
        let slice = server.get_json(&format!("/api/runs/{id}/output/1"));
        (slice["text"] == "before-gate\n").then_some(slice)
    })
    .expect("the running step's output");
    assert_eq!(open["status"], "open");
    assert_eq!(open["complete"], false);
    assert_eq!(server.get(&format!("/api/runs/{id}/output/2")).status, 404);
    p.write("gate", "");
    let second = crate::common::poll(limit, || {
        let reply = server.get(&format!("/api/runs/{id}/output/2"));
        (reply.status == 200 && reply.json()["complete"] == true).then(|| reply.json())
    })
    .expect("the second step's output");
    assert_eq!(second["text"], "second-step\n");
    let first = server.get_json(&format!("/api/runs/{id}/output/1"));
    assert_eq!(first["status"], "finished");
    assert_eq!(first["text"], "before-gate\nafter-gate\n");
    assert_eq!(first["complete"], true);
    let rest = server.get_json(&format!("/api/runs/{id}/output/1?offset=12"));
    assert_eq!(rest["text"], "after-gate\n");
}
