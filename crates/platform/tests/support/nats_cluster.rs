//! A NATS JetStream cluster of `nats-server` processes for tests: free
//! ports on 127.0.0.1, a temporary store directory per node, killed
//! (SIGKILL) when dropped. Included by path by the tests that need one.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// One `nats-server` of the cluster.
pub struct Node {
    /// Its `server_name` (`n1`, `n2`, …), as stream info names leaders.
    pub name: String,
    /// Client port.
    pub port: u16,
    config: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

/// The cluster; its nodes are killed when it is dropped.
pub struct NatsCluster {
    pub nodes: Vec<Node>,
    dir: tempfile::TempDir,
}

/// A port free right now on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Whether `nats-server` can be run (the tests skip with a note otherwise).
pub fn nats_server_available() -> bool {
    Command::new("nats-server")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

impl NatsCluster {
    /// Starts `size` nodes routed to each other (one node: a plain server)
    /// and waits until JetStream answers through every one of them (a meta
    /// leader is elected).
    pub async fn start(size: usize) -> NatsCluster {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let ports: Vec<(u16, u16)> = (0..size).map(|_| (free_port(), free_port())).collect();
        let routes: Vec<String> = ports
            .iter()
            .map(|(_, cluster)| format!("nats-route://127.0.0.1:{cluster}"))
            .collect();
        let mut nodes = Vec::new();
        for (i, (port, cluster_port)) in ports.iter().enumerate() {
            let name = format!("n{}", i + 1);
            let store = dir.path().join(&name);
            let config = dir.path().join(format!("{name}.conf"));
            let mut text = format!(
                "server_name: {name}\nlisten: 127.0.0.1:{port}\njetstream {{ store_dir: \"{}\" }}\n",
                store.display()
            );
            // One node is a plain server; more form a cluster.
            if size > 1 {
                text.push_str(&format!(
                    "cluster {{\n  name: ecom-test\n  listen: 127.0.0.1:{cluster_port}\n  routes: [{}]\n}}\n",
                    routes.join(", ")
                ));
            }
            std::fs::write(&config, text).expect("the node's configuration is written");
            nodes.push(Node {
                log: dir.path().join(format!("{name}.log")),
                name,
                port: *port,
                config,
                child: None,
            });
        }
        let mut cluster = NatsCluster { nodes, dir };
        for i in 0..size {
            cluster.spawn(i);
        }
        for i in 0..size {
            cluster.wait_ready(i).await;
        }
        cluster
    }

    /// Every node's URL, separated by commas (the bus URL of the cluster).
    pub fn url(&self) -> String {
        self.nodes
            .iter()
            .map(|n| format!("nats://127.0.0.1:{}", n.port))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The URL of one node.
    pub fn node_url(&self, i: usize) -> String {
        format!("nats://127.0.0.1:{}", self.nodes[i].port)
    }

    /// Index of the node named `name`.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.name == name)
    }

    fn spawn(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&node.log)
            .expect("the node's log opens");
        let child = Command::new("nats-server")
            .arg("-c")
            .arg(&node.config)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("nats-server starts");
        node.child = Some(child);
    }

    /// Kills node `i` with SIGKILL, as a crash would.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.nodes[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts node `i` again on its store and waits until it answers.
    pub async fn restart(&mut self, i: usize) {
        self.kill(i);
        self.spawn(i);
        self.wait_ready(i).await;
    }

    /// Whether node `i` runs.
    pub fn is_running(&self, i: usize) -> bool {
        self.nodes[i].child.is_some()
    }

    /// Waits (up to a minute) until JetStream answers through node `i`.
    async fn wait_ready(&self, i: usize) {
        let url = self.node_url(i);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            // The JetStream API answers (here: "no such stream") once the
            // node knows the cluster's meta leader.
            let ready = async {
                let client = async_nats::connect(&url).await.ok()?;
                let js = async_nats::jetstream::new(client);
                match js.get_stream("readiness-probe").await {
                    Ok(_) => Some(()),
                    Err(e) => matches!(
                        e.kind(),
                        async_nats::jetstream::context::GetStreamErrorKind::JetStream(e)
                            if e.error_code() == async_nats::jetstream::ErrorCode::STREAM_NOT_FOUND
                    )
                    .then_some(()),
                }
            };
            if tokio::time::timeout(Duration::from_secs(3), ready)
                .await
                .ok()
                .flatten()
                .is_some()
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "NATS node {} did not become ready; its log: {}",
                self.nodes[i].name,
                std::fs::read_to_string(&self.nodes[i].log).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The temporary directory holding the nodes' stores and logs.
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill(i);
        }
    }
}
