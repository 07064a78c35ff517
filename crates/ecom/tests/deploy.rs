//! The deployment files — `Dockerfile`, `deploy/compose.yaml` and the
//! Kubernetes manifests `kubectl kustomize deploy/k8s` renders — use only
//! commands, flags, environment variables and services that `ecom` has (as
//! `ecom --help` and `ecom <command> --help` list them), and lay out the
//! topology docs/operations.md describes. Images cannot be built or pulled
//! here, so this is what can be checked. The Kubernetes part is skipped with
//! a note when `kubectl` is absent.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde::Deserialize as _;
use serde_yaml::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Command;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo().join(path)).unwrap_or_else(|e| panic!("cannot read {path}: {e}"))
}

/// What the binary says it takes.
struct Known {
    /// Commands, each with the flags it takes (global ones included).
    commands: BTreeMap<String, BTreeSet<String>>,
    /// Environment variables: the flags' and `ECOM_<SERVICE>_URL`.
    envs: BTreeSet<String>,
    services: BTreeSet<String>,
}

fn help(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_ecom"))
        .args(args)
        .env_clear()
        .output()
        .expect("ecom runs");
    assert!(out.status.success(), "ecom {args:?} failed");
    String::from_utf8(out.stdout).unwrap()
}

/// `--flag` words of a help text.
fn flags_in(text: &str) -> BTreeSet<String> {
    text.split(|c: char| c.is_whitespace() || c == ',' || c == '[' || c == ']' || c == '=' || c == '<')
        .filter(|w| w.starts_with("--") && w.len() > 2)
        .map(str::to_owned)
        .collect()
}

/// `NAME` of each `[env: NAME=…]` of a help text.
fn envs_in(text: &str) -> BTreeSet<String> {
    text.split("[env: ")
        .skip(1)
        .filter_map(|rest| rest.split(['=', ']']).next())
        .map(str::to_owned)
        .collect()
}

fn known() -> Known {
    let top = help(&["--help"]);
    let global = flags_in(&top);
    let mut envs = envs_in(&top);
    let mut commands = BTreeMap::new();
    // The commands section lists "  name  description" lines.
    let listed: Vec<String> = top
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .filter(|c| c != "help")
        .collect();
    assert!(
        listed.contains(&"serve".to_owned()),
        "ecom --help lists no serve: {top}"
    );
    for command in listed {
        let text = help(&[&command, "--help"]);
        envs.extend(envs_in(&text));
        let mut flags = flags_in(&text);
        flags.extend(global.iter().cloned());
        commands.insert(command, flags);
    }
    let services: BTreeSet<String> = ecom::app::service_names()
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    for service in &services {
        envs.insert(format!("ECOM_{}_URL", service.to_uppercase().replace('-', "_")));
    }
    Known {
        commands,
        envs,
        services,
    }
}

impl Known {
    /// Problems with one `ecom` command line (after the binary's name).
    fn check_args(&self, args: &[String], place: &str) -> Vec<String> {
        let mut problems = Vec::new();
        let Some((command, rest)) = args.split_first() else {
            return vec![format!("{place}: no command")];
        };
        let Some(flags) = self.commands.get(command) else {
            return vec![format!("{place}: ecom has no command '{command}'")];
        };
        let mut positional = Vec::new();
        for arg in rest {
            if arg.starts_with("--") {
                let flag = arg.split('=').next().unwrap_or(arg);
                if !flags.contains(flag) {
                    problems.push(format!("{place}: 'ecom {command}' has no flag {flag}"));
                }
            } else {
                positional.push(arg);
            }
        }
        if command == "serve" || command == "migrate" {
            for service in positional {
                if !self.services.contains(service.as_str()) {
                    problems.push(format!("{place}: no service '{service}'"));
                }
            }
        }
        problems
    }

    fn check_env(&self, name: &str, place: &str) -> Option<String> {
        (name.starts_with("ECOM_") && !self.envs.contains(name))
            .then(|| format!("{place}: ecom reads no variable {name}"))
    }
}

fn strings(value: &Value) -> Vec<String> {
    match value {
        Value::Sequence(items) => items
            .iter()
            .filter_map(|v| match v {
                Value::String(s) => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            })
            .collect(),
        Value::String(s) => s.split_whitespace().map(str::to_owned).collect(),
        _ => Vec::new(),
    }
}

#[test]
fn the_dockerfile_runs_the_one_binary_as_a_non_root_user_with_known_settings() {
    let known = known();
    let text = read("Dockerfile").replace("\\\n", " ");
    let mut problems = Vec::new();
    let stages = text.lines().filter(|l| l.starts_with("FROM ")).count();
    assert!(stages >= 2, "the Dockerfile is not multi-stage");
    let last_user = text
        .lines()
        .filter_map(|l| l.strip_prefix("USER "))
        .next_back()
        .expect("the Dockerfile sets a USER");
    assert!(
        !last_user.starts_with("root") && !last_user.starts_with('0'),
        "the image runs as {last_user}"
    );
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("ENV ") {
            for pair in rest.split_whitespace() {
                let name = pair.split('=').next().unwrap_or(pair);
                problems.extend(known.check_env(name, "Dockerfile ENV"));
            }
        }
        if let Some(rest) = line.strip_prefix("CMD ") {
            let args: Vec<String> = serde_json::from_str(rest).expect("CMD is a JSON array");
            problems.extend(known.check_args(&args, "Dockerfile CMD"));
        }
        if let Some(rest) = line.strip_prefix("ENTRYPOINT ") {
            let args: Vec<String> = serde_json::from_str(rest).expect("ENTRYPOINT is a JSON array");
            assert_eq!(
                args,
                ["/usr/local/bin/ecom"],
                "the entry point is the ecom binary"
            );
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
}

#[test]
fn compose_runs_every_service_twice_on_postgres_and_a_three_node_jetstream_cluster() {
    let known = known();
    let mut doc: Value = serde_yaml::from_str(&read("deploy/compose.yaml")).unwrap();
    doc.apply_merge().unwrap();
    let services = doc["services"].as_mapping().expect("compose has services");
    let mut problems = Vec::new();
    let mut replicas: BTreeMap<String, usize> = BTreeMap::new();
    let mut nats_nodes = 0;
    for (name, service) in services {
        let name = name.as_str().unwrap_or_default();
        let image = service["image"].as_str().unwrap_or_default();
        if image.starts_with("nats:") {
            nats_nodes += 1;
            let tag = image.trim_start_matches("nats:");
            assert!(
                !tag.starts_with("2.9") && !tag.starts_with("2.8"),
                "{name}: sync_interval needs nats-server 2.10 or later"
            );
        }
        if !image.starts_with("ecom") {
            continue;
        }
        let place = format!("compose service {name}");
        let mut env = BTreeMap::new();
        match &service["environment"] {
            Value::Mapping(map) => {
                for (k, v) in map {
                    let value = match v {
                        Value::String(s) => s.clone(),
                        Value::Number(n) => n.to_string(),
                        _ => String::new(),
                    };
                    env.insert(k.as_str().unwrap_or_default().to_owned(), value);
                }
            }
            Value::Sequence(items) => {
                for item in items.iter().filter_map(Value::as_str) {
                    let (k, v) = item.split_once('=').unwrap_or((item, ""));
                    env.insert(k.to_owned(), v.to_owned());
                }
            }
            _ => {}
        }
        for key in env.keys() {
            problems.extend(known.check_env(key, &place));
        }
        let args = strings(&service["command"]);
        problems.extend(known.check_args(&args, &place));
        if args.first().map(String::as_str) == Some("serve") {
            for served in &args[1..] {
                *replicas.entry(served.clone()).or_default() += 1;
            }
            // Every address it is given names a service of this file.
            for (key, value) in env
                .iter()
                .filter(|(k, _)| k.ends_with("_URL") && *k != "ECOM_BUS_URL")
            {
                for url in value.split(',') {
                    let host = url
                        .trim_start_matches("http://")
                        .split(':')
                        .next()
                        .unwrap_or_default();
                    if !services.contains_key(host) {
                        problems.push(format!("{place}: {key} names {host}, not a service of the file"));
                    }
                }
            }
            for needed in ["ECOM_DATABASE_URL", "ECOM_BUS_URL", "ECOM_SERVICE_KEY"] {
                if !env.contains_key(needed) {
                    problems.push(format!("{place}: no {needed}"));
                }
            }
            if env.get("ECOM_BUS_REPLICAS").map(String::as_str) != Some("3") {
                problems.push(format!("{place}: streams not created with 3 replicas"));
            }
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
    assert_eq!(nats_nodes, 3, "a 3-node JetStream cluster");
    for service in &known.services {
        assert_eq!(replicas.get(service), Some(&2), "{service} runs twice");
    }
    assert!(
        services.keys().any(|k| k.as_str() == Some("postgres")),
        "PostgreSQL is part of the file"
    );
    assert!(
        services.iter().any(|(_, s)| s["ports"].as_sequence().is_some()),
        "a front door publishes a port"
    );
    let nats_conf = read("deploy/nats/nats.conf");
    assert!(
        nats_conf.contains("sync_interval: always"),
        "JetStream fsyncs every write"
    );
}

#[test]
fn the_kubernetes_manifests_render_and_use_only_what_ecom_takes() {
    let rendered = match Command::new("kubectl")
        .args(["kustomize"])
        .arg(repo().join("deploy/k8s"))
        .output()
    {
        Ok(out) if out.status.success() => String::from_utf8(out.stdout).unwrap(),
        Ok(out) => panic!(
            "kubectl kustomize deploy/k8s failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(_) => {
            eprintln!("skipped: kubectl is not installed (needed to render deploy/k8s)");
            return;
        }
    };
    let known = known();
    let docs: Vec<Value> = serde_yaml::Deserializer::from_str(&rendered)
        .map(|d| Value::deserialize(d).expect("each rendered document is YAML"))
        .collect();
    let named = |kind: &str| -> BTreeMap<String, &Value> {
        docs.iter()
            .filter(|d| d["kind"].as_str() == Some(kind))
            .map(|d| (d["metadata"]["name"].as_str().unwrap_or_default().to_owned(), d))
            .collect()
    };
    let (config_maps, secrets, k8s_services) = (named("ConfigMap"), named("Secret"), named("Service"));
    let mut problems = Vec::new();
    let mut deployed = BTreeMap::new();
    let mut migrates = false;
    for doc in &docs {
        let kind = doc["kind"].as_str().unwrap_or_default();
        let name = doc["metadata"]["name"].as_str().unwrap_or_default();
        let spec = &doc["spec"]["template"]["spec"];
        let Some(containers) = spec["containers"].as_sequence() else {
            continue;
        };
        for container in containers {
            let image = container["image"].as_str().unwrap_or_default();
            if !image.contains("ecom") {
                continue;
            }
            let place = format!("{kind} {name}");
            let mut args = strings(&container["command"]);
            args.extend(strings(&container["args"]));
            problems.extend(known.check_args(&args, &place));
            for var in container["env"].as_sequence().into_iter().flatten() {
                problems.extend(known.check_env(var["name"].as_str().unwrap_or_default(), &place));
                let value = var["value"].as_str().unwrap_or_default();
                if let Some(host) = value.strip_prefix("http://").and_then(|v| v.split(':').next()) {
                    if !k8s_services.contains_key(host) {
                        problems.push(format!("{place}: {value} names no Service"));
                    }
                }
            }
            for source in container["envFrom"].as_sequence().into_iter().flatten() {
                let (from, data) = if let Some(map) = source["configMapRef"]["name"].as_str() {
                    (config_maps.get(map), "data")
                } else if let Some(secret) = source["secretRef"]["name"].as_str() {
                    (secrets.get(secret), "stringData")
                } else {
                    continue;
                };
                let Some(from) = from else {
                    problems.push(format!("{place}: envFrom names a missing object"));
                    continue;
                };
                for key in from[data]
                    .as_mapping()
                    .into_iter()
                    .flatten()
                    .filter_map(|(k, _)| k.as_str())
                {
                    problems.extend(known.check_env(key, &place));
                }
            }
            match (kind, args.first().map(String::as_str)) {
                ("Deployment", Some("serve")) => {
                    let probe = |p: &str| {
                        container[p]["httpGet"]["path"]
                            .as_str()
                            .unwrap_or_default()
                            .to_owned()
                    };
                    if probe("livenessProbe") != "/healthz" || probe("readinessProbe") != "/readyz" {
                        problems.push(format!("{place}: probes are not /healthz and /readyz"));
                    }
                    for served in &args[1..] {
                        deployed.insert(served.clone(), doc["spec"]["replicas"].as_u64().unwrap_or(1));
                        if !k8s_services.contains_key(served.as_str()) {
                            problems.push(format!("{place}: no Service named {served}"));
                        }
                    }
                }
                ("Job", Some("migrate")) => migrates = true,
                _ => {}
            }
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
    assert!(migrates, "a Job runs ecom migrate");
    for service in &known.services {
        assert!(
            deployed.get(service).is_some_and(|r| *r >= 2),
            "{service} is deployed with at least 2 replicas: {deployed:?}"
        );
    }
    let nats = named("StatefulSet");
    let nats = nats.get("nats").expect("NATS runs as a StatefulSet");
    assert_eq!(nats["spec"]["replicas"].as_u64(), Some(3));
    assert!(
        config_maps
            .get("nats-config")
            .and_then(|c| c["data"]["nats.conf"].as_str())
            .is_some_and(|conf| conf.contains("sync_interval: always")),
        "JetStream fsyncs every write"
    );
}

#[test]
fn the_bus_settings_file_parses_and_its_kubernetes_copy_is_the_same() {
    // kustomize reads files only below deploy/k8s, hence the copy.
    assert_eq!(read("deploy/ecom.toml"), read("deploy/k8s/ecom.toml"));
    let file = ecom_runtime::ConfigFile::read(&repo().join("deploy/ecom.toml")).unwrap();
    let config = ecom_runtime::Config::merge(&Default::default(), file, &[], |_| None).unwrap();
    // Retries outlast JetStream's 60 s ack wait, even with every delay
    // drawn at half its bound.
    let bus = &config.bus;
    let span: u128 = (1..bus.max_attempts)
        .map(|n| {
            let bound = bus.initial_backoff.as_millis() << (n - 1).min(20);
            bound.min(bus.max_backoff.as_millis()) / 2
        })
        .sum();
    assert!(span > 60_000, "retries span only {span} ms");
}

#[test]
fn a_wrong_flag_or_variable_is_caught() {
    // The checks above would pass vacuously if nothing were recognised.
    let known = known();
    let ok: Vec<String> = ["serve", "orders", "--bus-replicas=3"].map(String::from).to_vec();
    assert!(
        known.check_args(&ok, "t").is_empty(),
        "{:?}",
        known.check_args(&ok, "t")
    );
    for bad in [
        vec!["serve", "order"],
        vec!["serve", "orders", "--bus-replica"],
        vec!["start"],
    ] {
        let args: Vec<String> = bad.iter().map(|s| (*s).to_owned()).collect();
        assert!(!known.check_args(&args, "t").is_empty(), "{bad:?} passed");
    }
    assert!(known.check_env("ECOM_DATABASE_POOL_SIZE", "t").is_none());
    assert!(known.check_env("ECOM_ORDERS_URL", "t").is_none());
    assert!(known.check_env("ECOM_BUS_REPLICA", "t").is_some());
}
