//! Issue 12, "The host is protected": owner-only files, half-sent requests
//! closed, a cap on connections with a clean refusal, and password hashing
//! that a burst of sign-ups cannot turn into a memory exhaustion.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

// The allocator of the `ecom` binary, so that memory is measured as it runs.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

use common::{client_from, Storage, TestApp, PASSWORD};
use reqwest::StatusCode;
use serde_json::json;
use std::time::Duration;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// Reads what the server sends until it closes the connection; panics if
/// it does not close within `within`.
async fn read_until_closed(stream: &mut TcpStream, within: Duration) -> Vec<u8> {
    let mut got = Vec::new();
    let read = tokio::time::timeout(within, async {
        let mut buf = [0u8; 1024];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(read.is_ok(), "the server kept the connection open for {within:?}");
    got
}

/// A connection from `ip` to the app.
async fn connect_from(app: &TestApp, ip: &str) -> TcpStream {
    let addr: std::net::SocketAddr = app.base.trim_start_matches("http://").parse().unwrap();
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket
        .bind(std::net::SocketAddr::new(ip.parse().unwrap(), 0))
        .unwrap();
    socket.connect(addr).await.unwrap()
}

#[tokio::test]
async fn half_sent_request_headers_are_closed_after_the_header_timeout() {
    let app = TestApp::spawn_with_config(Storage::Sqlite, |c| {
        c.server.header_timeout = Duration::from_secs(1);
    })
    .await;
    let mut stream = connect_from(&app, "127.0.0.1").await;
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .await
        .unwrap();
    // Generous for a loaded machine; the default timeout is 10 s.
    read_until_closed(&mut stream, Duration::from_secs(30)).await;
    // Whole requests are served as before.
    assert_eq!(app.get("/healthz").await.0, StatusCode::OK);
    app.stop().await;
}

#[tokio::test]
async fn the_default_header_timeout_is_ten_seconds() {
    let config = ecom_runtime::Config::merge(&Default::default(), Default::default(), &[], |_| None).unwrap();
    assert_eq!(config.server.header_timeout, Duration::from_secs(10));
}

#[tokio::test]
async fn connections_past_a_cap_are_refused_with_503_and_readyz_still_answers() {
    let app = TestApp::spawn_with_config(Storage::Sqlite, |c| {
        c.server.max_connections = 6;
        c.server.max_connections_per_address = 3;
    })
    .await;
    // Three idle connections from one address fill its share…
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(connect_from(&app, "127.0.0.1").await);
    }
    // …so a fourth from it is answered 503 and closed.
    let mut fourth = connect_from(&app, "127.0.0.1").await;
    let answer = read_until_closed(&mut fourth, Duration::from_secs(30)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("retry-after: 1"), "{answer}");
    assert!(answer.contains(r#"{"message":"too many connections"#), "{answer}");
    // Another address is still served: the health check answers.
    let (status, body) = common::send(client_from("127.0.0.2").get(app.url("/readyz"))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // Three more fill the total; a seventh, from anywhere, is refused.
    for _ in 0..3 {
        held.push(connect_from(&app, "127.0.0.3").await);
    }
    let mut seventh = connect_from(&app, "127.0.0.4").await;
    let answer = read_until_closed(&mut seventh, Duration::from_secs(30)).await;
    assert!(String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 503"));
    // Closed connections give their places back.
    drop(held);
    app.eventually("a place to free up", || async {
        reqwest::Client::new()
            .get(app.url("/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status() == StatusCode::OK)
    })
    .await;
    app.stop().await;
}

#[cfg(unix)]
mod files {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;
    use std::path::Path;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    /// Every file of the data dir with its mode.
    fn modes(dir: &Path) -> Vec<(String, u32)> {
        let mut out: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (e.file_name().to_string_lossy().into_owned(), mode(&e.path()))
            })
            .collect();
        out.sort();
        out
    }

    #[tokio::test]
    async fn the_data_dir_is_owner_only_and_so_are_its_databases_and_keys() {
        let app = TestApp::spawn(Storage::Sqlite).await;
        // Written to, so that the WAL files exist.
        let (status, _) = app
            .post(
                "/users/sign-up",
                &json!({"email": "pat@example.com", "password": PASSWORD}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED);
        assert_eq!(mode(&app.data_dir), 0o700);
        let files = modes(&app.data_dir);
        for name in [
            "users.db",
            "users.db-wal",
            "users.db-shm",
            "platform.db",
            "service.key",
        ] {
            assert!(files.iter().any(|(n, _)| n == name), "no {name} in {files:?}");
        }
        for (name, mode) in &files {
            assert_eq!(*mode, 0o600, "{name} is {mode:o}; all: {files:?}");
        }
        app.stop().await;
    }

    #[tokio::test]
    async fn loose_modes_are_tightened_at_start() {
        let app = TestApp::spawn_with_config(Storage::Sqlite, |c| {
            // As an older version or a careless copy left them.
            let dir = &c.data_dir;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
            std::fs::write(dir.join("users.db"), b"").unwrap();
            std::fs::set_permissions(dir.join("users.db"), std::fs::Permissions::from_mode(0o644)).unwrap();
            let key: String = (0..32).map(|i| format!("{i:02x}")).collect();
            std::fs::write(dir.join("service.key"), key).unwrap();
            std::fs::set_permissions(dir.join("service.key"), std::fs::Permissions::from_mode(0o644))
                .unwrap();
        })
        .await;
        assert_eq!(mode(&app.data_dir), 0o700);
        assert_eq!(mode(&app.data_dir.join("users.db")), 0o600);
        assert_eq!(mode(&app.data_dir.join("service.key")), 0o600);
        // And the shop works on them.
        let (status, _) = app
            .post(
                "/users/sign-up",
                &json!({"email": "quinn@example.com", "password": PASSWORD}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED);
        app.stop().await;
    }
}

/// Kilobytes of a `/proc/self/status` field (`VmRSS`, `VmHWM`).
#[cfg(target_os = "linux")]
fn proc_status_kb(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn a_burst_of_sign_ups_hashes_a_few_at_a_time_in_bounded_memory() {
    // Each argon2id hash holds 19 MiB. Unbounded, 200 at once took the
    // server from 46 MB to 1.8 GB; two at a time need tens of MB. (Measured
    // with the binary's allocator, jemalloc: glibc's malloc keeps much of
    // what the hashes freed, whatever their concurrency.)
    let app = TestApp::spawn_with_config(Storage::Sqlite, |c| {
        c.users.hash_concurrency = 2;
        c.users.hash_queue = 400;
    })
    .await;
    let before_kb = proc_status_kb("VmRSS");
    let answers = futures::future::join_all((0..200).map(|i| {
        let app = &app;
        async move {
            app.post(
                "/users/sign-up",
                &json!({"email": format!("burst{i}@example.com"), "password": PASSWORD}),
            )
            .await
            .0
        }
    }))
    .await;
    assert!(answers.iter().all(|s| *s == StatusCode::CREATED), "{answers:?}");
    let peak_kb = proc_status_kb("VmHWM");
    let grew_mb = peak_kb.saturating_sub(before_kb) / 1024;
    // Measured: about 50 MB two at a time, over 500 MB unbounded.
    assert!(grew_mb < 250, "memory grew by {grew_mb} MB during the burst");
    app.stop().await;
}
