//! `fsync_floor`: the floor a step cannot beat on this disk and this kernel.
//!
//! - `append_fdatasync_600b`: one `write` of 600 bytes (about one step's batch) to an
//!   `O_APPEND` file, then `fdatasync`: what every step pays to be durable.
//! - `spawn_bash_true`: spawning `bash -c true` and waiting for it: the cheapest shell action.
//! - `spawn_and_fdatasync`: both, one after the other: the floor of one step of a trivial
//!   shell loop, against which `whole_run` is compared.
//!
//! No budget of its own: it is the denominator of the 1.05x budget of `whole_run`.
//! The file lives in a temp folder (`DLOOP_BENCH_DIR` overrides): put it on the disk the runs
//! live on.
//!
//! Run: `cargo bench -p dloop-benches --bench fsync_floor`

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::process::Command;
use std::time::Duration;

use criterion::Criterion;
use dloop_benches::temp_dir;

fn fsync_floor(c: &mut Criterion) {
    let dir = temp_dir();
    let mut file = OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(dir.path().join("events.jsonl"))
        .expect("open log");
    let line = {
        let mut line = vec![b'x'; 599];
        line.push(b'\n');
        line
    };
    let mut group = c.benchmark_group("fsync_floor");
    group
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(4));
    group.bench_function("append_fdatasync_600b", |b| {
        b.iter(|| {
            file.write_all(&line).expect("write");
            file.sync_data().expect("fdatasync");
        })
    });
    group.bench_function("spawn_bash_true", |b| {
        b.iter(|| {
            let status = Command::new("bash")
                .args(["-c", "true"])
                .status()
                .expect("spawn bash");
            assert!(status.success());
        })
    });
    group.bench_function("spawn_and_fdatasync", |b| {
        b.iter(|| {
            let status = Command::new("bash")
                .args(["-c", "true"])
                .status()
                .expect("spawn bash");
            assert!(status.success());
            file.write_all(&line).expect("write");
            file.sync_data().expect("fdatasync");
        })
    });
    group.finish();
}

// A plain `main` rather than `criterion_group!`, whose generated `pub fn` has no docs.
fn main() {
    let mut c = Criterion::default().configure_from_args();
    fsync_floor(&mut c);
    c.final_summary();
}
