//! `ecom bench` as a user runs it: a short whole-journey run on the default
//! pair (SQLite + embedded bus) and, when `ECOM_TEST_DATABASE_URL` and
//! `ECOM_TEST_BUS_URL` are set, on PostgreSQL + NATS JetStream, which must
//! leave no schema behind.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

fn env_var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// Runs `ecom bench journey` briefly with `extra` flags; its standard output.
fn journey(extra: &[&str]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_ecom"))
        .args(["bench", "journey", "--duration", "1", "--connections", "4"])
        .args(extra)
        .current_dir(dir.path())
        .env_remove("ECOM_DATABASE_URL")
        .env_remove("ECOM_BUS_URL")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "ecom bench failed: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// The number after `label` in the bench's summary line.
fn figure(stdout: &str, label: &str) -> u64 {
    let rest = &stdout[stdout
        .find(label)
        .unwrap_or_else(|| panic!("no {label} in: {stdout}"))
        + label.len()..];
    rest.split_whitespace().next().unwrap().parse().unwrap()
}

#[test]
fn journeys_complete_without_errors_on_the_default_pair() {
    let out = journey(&[]);
    assert!(out.contains("storage: SQLite files"), "{out}");
    assert!(out.contains("bus: embedded"), "{out}");
    assert!(figure(&out, "journeys:") > 0, "{out}");
    assert_eq!(figure(&out, "errors:"), 0, "{out}");
}

#[tokio::test]
async fn journeys_run_on_postgres_and_nats_and_leave_no_schema_behind() {
    let (Some(db), Some(bus)) = (env_var("ECOM_TEST_DATABASE_URL"), env_var("ECOM_TEST_BUS_URL")) else {
        eprintln!("note: ECOM_TEST_DATABASE_URL and ECOM_TEST_BUS_URL are not both set: bench on PostgreSQL + NATS skipped");
        return;
    };
    let out = tokio::task::spawn_blocking({
        let (db, bus) = (db.clone(), bus.clone());
        move || journey(&["--database-url", &db, "--bus-url", &bus])
    })
    .await
    .unwrap();
    assert!(out.contains("storage: PostgreSQL, schemas bench_"), "{out}");
    assert!(out.contains("bus: NATS JetStream"), "{out}");
    assert!(figure(&out, "journeys:") > 0, "{out}");
    assert_eq!(figure(&out, "errors:"), 0, "{out}");
    let prefix = out
        .split("schemas ")
        .nth(1)
        .and_then(|rest| rest.split('*').next())
        .unwrap()
        .to_owned();
    use ecom_storage::sqlx::{self, Row as _};
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&db).await.unwrap();
    let left: i64 = sqlx::query("SELECT COUNT(*) FROM pg_namespace WHERE starts_with(nspname::text, $1)")
        .bind(prefix.clone())
        .fetch_one(&pool)
        .await
        .unwrap()
        .try_get(0)
        .unwrap();
    assert_eq!(left, 0, "schemas {prefix}* were left behind");
}

/// A port free right now on 127.0.0.1.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap()
}

/// Kills the server when the test ends, however it ends.
struct Server(std::process::Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn bench_drives_a_platform_it_did_not_boot() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().to_str().unwrap().to_owned();
    let ecom = || {
        let mut command = Command::new(env!("CARGO_BIN_EXE_ecom"));
        command
            .args(["--data-dir", &data_dir])
            .env_remove("ECOM_DATABASE_URL")
            .env_remove("ECOM_BUS_URL")
            .env_remove("ECOM_SERVICE_KEY");
        command
    };
    // As an operator would: make the data dir, fill the catalogue, start.
    let migrated = ecom().arg("migrate").output().unwrap();
    assert!(migrated.status.success(), "{migrated:?}");
    // The sample catalogue without its stock figures: whole journeys would
    // soon buy out the products it tracks.
    let sample =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../data/catalogue.json")).unwrap();
    let mut products: Vec<serde_json::Value> = serde_json::from_str(&sample).unwrap();
    for p in &mut products {
        p.as_object_mut().unwrap().remove("stock");
    }
    let catalogue = dir.path().join("catalogue.json");
    std::fs::write(&catalogue, serde_json::to_string(&products).unwrap()).unwrap();
    let catalogue = catalogue.to_str().unwrap();
    let imported = ecom().args(["products", "import", catalogue]).output().unwrap();
    assert!(imported.status.success(), "{imported:?}");
    let port = free_port();
    let _server = Server(
        ecom()
            .args(["up", "--listen", &format!("127.0.0.1:{port}")])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let url = format!("http://127.0.0.1:{port}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(std::time::Instant::now() < deadline, "the server did not start");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let bench = |scenario: &str| {
        let out = ecom()
            .args([
                "bench",
                scenario,
                "--url",
                &url,
                "--duration",
                "1",
                "--connections",
                "2",
            ])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "ecom bench {scenario} --url failed: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    };
    // Pre-authorised through the server's /payment-3p/preauth; the orders
    // are checked and stored by the server.
    let out = bench("create-order");
    assert!(figure(&out, "requests:") > 0, "{out}");
    assert_eq!(figure(&out, "errors:"), 0, "{out}");
    // Staff users added to the server's data dir, journeys over its routes;
    // a second run finds them there.
    for _ in 0..2 {
        let out = bench("journey");
        assert!(figure(&out, "journeys:") > 0, "{out}");
        assert_eq!(figure(&out, "errors:"), 0, "{out}");
    }
}
