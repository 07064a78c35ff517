//! The NATS JetStream bus on a 3-node cluster the test starts itself
//! (`nats-server` on PATH, free ports, temporary stores): stream replicas,
//! and events that survive the loss of a node. Skipped with a note when
//! `nats-server` cannot be run.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/nats_cluster.rs"]
mod nats_cluster;

use ecom_platform::bus::nats::NatsBus;
use ecom_platform::{Bus, Event, Rule};
use ecom_runtime::config::BusSettings;
use nats_cluster::{nats_server_available, NatsCluster};
use serde_json::json;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

fn settings(replicas: usize) -> BusSettings {
    BusSettings {
        max_attempts: 5,
        initial_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(200),
        replicas,
        ..BusSettings::default()
    }
}

async fn cluster() -> Option<NatsCluster> {
    if !nats_server_available() {
        eprintln!("skipped: nats-server is not on PATH (needed to start a test cluster)");
        return None;
    }
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    Some(NatsCluster::start(3).await)
}

/// Replicas and leader of a stream.
async fn stream_state(cluster: &NatsCluster, name: &str) -> (usize, String) {
    let servers = ecom_platform::bus::nats::server_addrs(&cluster.url()).unwrap();
    let client = async_nats::connect(servers).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let mut stream = js.get_stream(name).await.unwrap();
    let info = stream.info().await.unwrap();
    let leader = info
        .cluster
        .as_ref()
        .and_then(|c| c.leader.clone())
        .unwrap_or_default();
    (info.config.num_replicas, leader)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_take_their_replicas_from_the_settings_and_a_start_never_lowers_them() {
    let Some(cluster) = cluster().await else { return };
    // Created with three replicas, then started by a process configured with one.
    let three = NatsBus::connect(&cluster.url(), settings(3), "a_").await.unwrap();
    assert_eq!(stream_state(&cluster, "a_ECOM").await.0, 3);
    assert_eq!(stream_state(&cluster, "a_ECOM_DLQ").await.0, 3);
    drop(three);
    let _one = NatsBus::connect(&cluster.url(), settings(1), "a_").await.unwrap();
    assert_eq!(
        stream_state(&cluster, "a_ECOM").await.0,
        3,
        "a start lowered the replicas"
    );
    assert_eq!(stream_state(&cluster, "a_ECOM_DLQ").await.0, 3);

    // Created with one, raised by a process configured with three.
    let _one = NatsBus::connect(&cluster.url(), settings(1), "b_").await.unwrap();
    assert_eq!(stream_state(&cluster, "b_ECOM").await.0, 1);
    let _three = NatsBus::connect(&cluster.url(), settings(3), "b_").await.unwrap();
    assert_eq!(stream_state(&cluster, "b_ECOM").await.0, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_published_while_the_stream_leader_and_the_clients_server_die_all_arrive() {
    let Some(mut cluster) = cluster().await else {
        return;
    };
    let setup = NatsBus::connect(&cluster.url(), settings(3), "k_").await.unwrap();
    drop(setup);
    let (_, leader) = stream_state(&cluster, "k_ECOM").await;
    let leader = cluster.index_of(&leader).expect("the stream has a leader");
    // The bus knows only the leader's address: losing it, the client must
    // move to a server it learnt from the cluster.
    let nats = NatsBus::connect(&cluster.node_url(leader), settings(3), "k_")
        .await
        .unwrap();
    let bus = Bus::new(Arc::new(nats));
    let seen = Arc::new(Mutex::new(HashSet::new()));
    let recorded = seen.clone();
    let rule = Rule::new(
        "test.recorder",
        json!({"source": ["ecommerce.orders"]}),
        move |event: Event| {
            let recorded = recorded.clone();
            async move {
                recorded.lock().unwrap().insert(event.id);
                Ok(())
            }
        },
    )
    .unwrap();
    bus.subscribe(rule).unwrap();
    let shutdown = CancellationToken::new();
    let running = bus.start(shutdown.clone()).await.unwrap();

    let mut published = Vec::new();
    for batch in 0..30 {
        if batch == 10 {
            cluster.kill(leader);
        }
        let events: Vec<Event> = (0..10)
            .map(|i| {
                Event::new(
                    "ecommerce.orders",
                    "OrderCreated",
                    vec![format!("order-{batch}-{i}")],
                    json!({}),
                )
            })
            .collect();
        bus.publish(&events)
            .await
            .unwrap_or_else(|e| panic!("batch {batch} was not published: {e:#}"));
        published.extend(events.iter().map(|e| e.id));
    }

    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let missing = {
            let seen = seen.lock().unwrap();
            published.iter().filter(|id| !seen.contains(*id)).count()
        };
        if missing == 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{missing} of {} events never arrived",
            published.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    shutdown.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(30), running).await;
}
