//! Connections held to account, with real sockets against a real `serve`
//! whose descriptor limit is lowered: a connection that says nothing is
//! closed after the header timeout on both ports and both HTTP versions, an
//! idle one after the idle timeout (HTTP/2) or the header timeout (HTTP/1
//! keep-alive), the number open is capped (a refusal
//! past it, not a hang), and the admin API refuses before it reads a body.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

use crate::harness::{TestDb, eventually};
use crate::processes::{free_port, http_get};

/// `serve` with at most 256 descriptors, a 3 s header timeout (long enough
/// for a busy machine to accept every test connection before any expires),
/// a 2 s idle timeout and 100 connections; its HTTP and gRPC ports.
async fn serve(db: &TestDb) -> (Child, u16, u16) {
    let (port, grpc) = (free_port(), free_port());
    let token = std::env::temp_dir().join(format!("{}-admin", db.schema));
    std::fs::write(&token, "admin-s3cret\n").expect("token");
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg("ulimit -n 256 && exec \"$0\" \"$@\"")
        .arg(env!("CARGO_BIN_EXE_switchyard"))
        .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--grpc-listen", &format!("127.0.0.1:{grpc}")])
        .args(["--header-timeout", "3s", "--idle-timeout", "2s", "--max-connections", "100"])
        .args(["--admin-token-file", &token.to_string_lossy()])
        .env("DATABASE_URL", &db.url)
        .env("SWITCHYARD_SCHEMA", &db.schema)
        .env("SWITCHYARD_ANONYMOUS", "true")
        .env("RUST_LOG", "warn")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let child = command.spawn().expect("serve");
    eventually(Duration::from_secs(30), "serve up", || async {
        http_get(port, "/readyz").await.is_some_and(|r| r.0 == 200)
    })
    .await;
    (child, port, grpc)
}

/// How long until the server closes `stream` (EOF or reset), reading and
/// discarding what it sends; `None` if it is still open after `within`.
async fn closed_within(stream: &mut TcpStream, within: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut buffer = [0u8; 4096];
    loop {
        match tokio::time::timeout_at((started + within).into(), stream.read(&mut buffer)).await {
            Err(_) => return None,
            Ok(Ok(0) | Err(_)) => return Some(started.elapsed()),
            Ok(Ok(_)) => continue,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_that_say_nothing_or_too_much_are_held_to_account() {
    let Some(db) = TestDb::new().await else { return };
    let (_serve, port, grpc) = serve(&db).await;

    // 300 connections that send nothing, beyond the cap of 100 and the
    // 256 descriptors: those past the cap are refused at once with a 503,
    // and a real request is answered (refused or served), never left hanging.
    let mut silent = Vec::new();
    for _ in 0..300 {
        silent.push(TcpStream::connect(("127.0.0.1", port)).await.expect("connect"));
    }
    let asked = Instant::now();
    let answer = tokio::time::timeout(Duration::from_secs(3), http_get(port, "/readyz")).await;
    assert!(answer.is_ok(), "a request past the cap hung for {:?}", asked.elapsed());
    // Read them all at once for a second and a half, well inside the
    // header timeout: only the refused ones have anything to say by then.
    let mut reads = tokio::task::JoinSet::new();
    for mut stream in silent {
        reads.spawn(async move {
            let mut head = [0u8; 12];
            let read = tokio::time::timeout(Duration::from_millis(1500), stream.read(&mut head)).await;
            let refused = matches!(read, Ok(Ok(n)) if head[..n].starts_with(b"HTTP/1.1 503"));
            (stream, refused)
        });
    }
    let mut refused = 0;
    let mut held = Vec::new();
    while let Some(done) = reads.join_next().await {
        match done.expect("read") {
            (_, true) => refused += 1,
            (stream, false) => held.push(stream),
        }
    }
    assert!(refused >= 150, "only {refused} of 300 were refused past a cap of 100");
    // The rest are closed after the header timeout (3 s), and the server
    // serves again.
    for stream in &mut held {
        let closed = closed_within(stream, Duration::from_secs(6)).await;
        assert!(closed.is_some(), "a silent connection outlived the header timeout");
    }
    assert_eq!(http_get(port, "/readyz").await.map(|r| r.0), Some(200));

    // The gRPC port: a connection that sends nothing is closed too.
    let mut quiet = TcpStream::connect(("127.0.0.1", grpc)).await.expect("connect");
    let closed = closed_within(&mut quiet, Duration::from_secs(8)).await;
    assert!(closed.is_some_and(|d| d >= Duration::from_millis(2900)), "gRPC: {closed:?}");

    // HTTP/2 on the HTTP port: the preface and a SETTINGS frame, then
    // nothing: closed once idle for the idle timeout (2 s).
    let mut h2 = TcpStream::connect(("127.0.0.1", port)).await.expect("connect");
    h2.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00").await.expect("preface");
    let closed = closed_within(&mut h2, Duration::from_secs(6)).await;
    assert!(closed.is_some_and(|d| d >= Duration::from_millis(1900)), "HTTP/2 idle: {closed:?}");

    // HTTP/1 keep-alive: one request served, then nothing: the next
    // request's headers are waited for no longer than the header timeout.
    let mut keep = TcpStream::connect(("127.0.0.1", port)).await.expect("connect");
    keep.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await.expect("request");
    let closed = closed_within(&mut keep, Duration::from_secs(8)).await;
    assert!(closed.is_some_and(|d| d >= Duration::from_millis(1900)), "HTTP/1 idle: {closed:?}");

    // The admin API refuses an unauthenticated caller before it reads the
    // body: 50 slow bodies are each answered 401 at once.
    let mut slow = Vec::new();
    for _ in 0..50 {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).await.expect("connect");
        let head = "POST /admin/agents HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"na";
        stream.write_all(head.as_bytes()).await.expect("write");
        slow.push(stream);
    }
    for mut stream in slow {
        let mut head = [0u8; 12];
        let read = tokio::time::timeout(Duration::from_secs(1), stream.read(&mut head)).await;
        let n = read.expect("answered without waiting for the body").expect("read");
        assert!(head[..n].starts_with(b"HTTP/1.1 401"), "{}", String::from_utf8_lossy(&head[..n]));
    }
}
