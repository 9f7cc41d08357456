//! The client side of the `dloop serve` tests (here and in the browser test, tests/web/): the
//! real server as a guard that kills it however the test ends, raw HTTP/1.1 over a
//! `TcpStream` (so tests can send exactly the bytes an attacker would), and a reader of the
//! server-sent event stream.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::common::TestProject;

/// How long the server may take to print its URL.
const START_LIMIT: Duration = Duration::from_secs(60);

/// A running `dloop serve`, killed on drop.
pub struct Server {
    child: Child,
    /// The URL it printed (`http://IP:PORT/`).
    pub url: String,
    /// Where to connect (127.0.0.1 for a server bound to 0.0.0.0).
    pub addr: SocketAddr,
}

impl Server {
    /// Starts `dloop serve ARGS` in the project with extra environment, and waits for the URL
    /// on its first stdout line.
    pub fn start(p: &TestProject, args: &[&str], env: &[(&str, &str)]) -> Server {
        let mut full = vec!["serve"];
        full.extend_from_slice(args);
        let mut child = p
            .command(&full)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn dloop serve");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(line)) = lines.next() {
                let _ = tx.send(line);
            }
            // Keep reading so the server never blocks on a full pipe.
            for _ in lines {}
        });
        let guard = |child: &mut Child| {
            let _ = child.kill();
            let _ = child.wait();
        };
        let url = match rx.recv_timeout(START_LIMIT) {
            Ok(url) => url,
            Err(_) => {
                guard(&mut child);
                panic!("dloop serve printed no URL within {START_LIMIT:?}");
            }
        };
        let host_port = url
            .strip_prefix("http://")
            .and_then(|rest| rest.strip_suffix('/'))
            .unwrap_or_else(|| panic!("not a URL: {url}"));
        let mut addr: SocketAddr = host_port.parse().expect("IP:PORT");
        if addr.ip().is_unspecified() {
            addr.set_ip([127, 0, 0, 1].into());
        }
        Server { child, url, addr }
    }

    /// The `Host` header a browser at [`Server::url`] sends.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.addr.port())
    }

    /// `GET path` with our Host header.
    pub fn get(&self, path: &str) -> Reply {
        self.send(&format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\n\r\n",
            self.host()
        ))
    }

    /// `GET path` parsed as JSON, asserting 200.
    pub fn get_json(&self, path: &str) -> serde_json::Value {
        let reply = self.get(path);
        assert_eq!(reply.status, 200, "GET {path}: {}", reply.body);
        reply.json()
    }

    /// Sends `raw` bytes and reads the whole reply (the server closes after one).
    pub fn send(&self, raw: &str) -> Reply {
        self.send_bytes(raw.as_bytes())
    }

    /// Sends `raw` bytes and reads the whole reply.
    pub fn send_bytes(&self, raw: &[u8]) -> Reply {
        let mut stream = TcpStream::connect(self.addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        stream.write_all(raw).expect("send");
        let mut bytes = Vec::new();
        // A server that answers and closes before reading everything may reset: keep what came.
        let _ = stream.read_to_end(&mut bytes);
        Reply::parse(&bytes)
    }

    /// Sends `raw` bytes and reads only the status code of the reply (so a reply that streams
    /// forever cannot hang the test); 0 when none came within 30 s.
    pub fn status_of(&self, raw: &str) -> u16 {
        let mut stream = TcpStream::connect(self.addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        stream.write_all(raw.as_bytes()).expect("send");
        let mut line = String::new();
        let _ = BufReader::new(stream).read_line(&mut line);
        line.split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    }

    /// Opens the event stream at `path` (`/api/events...`).
    pub fn events(&self, path: &str) -> Events {
        let mut stream = TcpStream::connect(self.addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_millis(200)))
            .expect("timeout");
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: {}\r\nAccept: text/event-stream\r\n\r\n",
            self.host()
        )
        .expect("send");
        let mut events = Events {
            reader: BufReader::new(stream),
            pending: Vec::new(),
        };
        let status = events
            .line(Instant::now() + START_LIMIT)
            .expect("status line");
        assert!(status.starts_with("HTTP/1.1 200"), "{status}");
        while !events
            .line(Instant::now() + START_LIMIT)
            .expect("header")
            .is_empty()
        {}
        events
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP reply.
#[derive(Debug)]
pub struct Reply {
    /// The status code (0 when nothing came back).
    pub status: u16,
    /// Header names lowercased.
    pub headers: Vec<(String, String)>,
    /// The body as text.
    pub body: String,
}

impl Reply {
    fn parse(bytes: &[u8]) -> Reply {
        let text = String::from_utf8_lossy(bytes).into_owned();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let mut lines = head.split("\r\n");
        let status = lines
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        Reply {
            status,
            headers,
            body: body.to_owned(),
        }
    }

    /// The first header called `name` (lowercase).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body parsed as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// A server-sent event stream being read.
pub struct Events {
    reader: BufReader<TcpStream>,
    pending: Vec<u8>,
}

impl Events {
    /// The next line (without its newline) before `deadline`.
    fn line(&mut self, deadline: Instant) -> Option<String> {
        loop {
            // Bytes read before a timeout stay in `pending` for the next try.
            match self.reader.read_until(b'\n', &mut self.pending) {
                Ok(0) => return None,
                Ok(_) if self.pending.ends_with(b"\n") => {
                    let line =
                        String::from_utf8_lossy(&std::mem::take(&mut self.pending)).into_owned();
                    return Some(line.trim_end_matches(['\n', '\r']).to_owned());
                }
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => return None,
            }
            if Instant::now() >= deadline {
                return None;
            }
        }
    }

    /// The next event (its name and parsed data) before `deadline`; comments are skipped.
    pub fn next(&mut self, deadline: Instant) -> Option<(String, serde_json::Value)> {
        let mut name = String::from("message");
        let mut data = String::new();
        loop {
            let line = self.line(deadline)?;
            if line.is_empty() {
                if data.is_empty() {
                    continue;
                }
                let value = serde_json::from_str(&data)
                    .unwrap_or_else(|e| panic!("event data is not JSON ({e}): {data}"));
                return Some((name, value));
            }
            if let Some(rest) = line.strip_prefix("event: ") {
                name = rest.to_owned();
            } else if let Some(rest) = line.strip_prefix("data: ") {
                data.push_str(rest);
            }
        }
    }

    /// Reads events until one named `name` satisfies `ok`, before `deadline`.
    pub fn until(
        &mut self,
        deadline: Instant,
        name: &str,
        ok: impl Fn(&serde_json::Value) -> bool,
    ) -> Option<serde_json::Value> {
        while let Some((event, data)) = self.next(deadline) {
            if event == name && ok(&data) {
                return Some(data);
            }
        }
        None
    }
}
