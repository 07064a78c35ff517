//! `ecom events …`: put an event on the bus, watch it, list the rules,
//! list, redrive and purge dead letters, replay the archive. Works on the same data dir, database
//! and bus as the server (same flags and environment as `ecom up`);
//! `tail` talks to the running server's listener.

use crate::app;
use anyhow::Context as _;
use clap::Subcommand;
use ecom_model::Timestamp;
use ecom_platform::bus::{DeadLetter, RuleInfo};
use ecom_platform::{Bus, Event};
use ecom_runtime::{Config, ServiceKey};
use ecom_storage::StorageTarget;
use futures::{SinkExt as _, StreamExt as _};
use tokio_tungstenite::tungstenite::Message;

/// `ecom events` subcommands.
#[derive(Debug, Subcommand)]
pub enum EventsCommand {
    /// Publish one event, as a service would (it reaches every matching rule).
    Put {
        /// Who emits it, e.g. ecommerce.orders.
        #[arg(long)]
        source: String,
        /// What happened, e.g. OrderCreated.
        #[arg(long)]
        detail_type: String,
        /// Id of a resource concerned (repeatable).
        #[arg(long = "resource", value_name = "ID")]
        resources: Vec<String>,
        /// The payload, a JSON object, e.g. '{"orderId":"…"}'.
        #[arg(long)]
        detail: String,
    },
    /// Print events as the running server carries them, one JSON per line.
    Tail {
        /// Only events of this source [default: every source].
        #[arg(long)]
        source: Option<String>,
    },
    /// Dead-letter queues of the rules.
    Dlq {
        #[command(subcommand)]
        command: DlqCommand,
    },
    /// List the rules the servers registered: name and EventBridge pattern.
    Rules {
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Deliver archived events of a time window to a rule again.
    Replay {
        /// The rule to deliver to, e.g. payment.on-delivery-completed.
        #[arg(long)]
        rule: String,
        /// Start of the window (RFC 3339, inclusive), e.g. 2026-11-25T00:00:00Z.
        #[arg(long)]
        from: String,
        /// End of the window (RFC 3339, exclusive) [default: now].
        #[arg(long)]
        to: Option<String>,
    },
}

/// `ecom events dlq` subcommands.
#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// List dead letters, oldest first, at most --limit of them.
    List {
        /// Only this rule's.
        #[arg(long)]
        rule: Option<String>,
        /// Show at most this many (the oldest); only that many are read.
        #[arg(long, default_value_t = 100, value_name = "N")]
        limit: usize,
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Send dead letters back for delivery.
    Redrive {
        /// Only this rule's [default: every rule's].
        #[arg(long)]
        rule: Option<String>,
    },
    /// Delete dead letters for good (they are not delivered) and print how many.
    Purge {
        /// Only this rule's [default: every rule's].
        #[arg(long)]
        rule: Option<String>,
    },
}

/// Runs an `ecom events` command.
pub async fn run(config: Config, command: EventsCommand) -> anyhow::Result<()> {
    match command {
        EventsCommand::Tail { source } => return tail(&config, source).await,
        EventsCommand::Put {
            source,
            detail_type,
            resources,
            detail,
        } => {
            // Checked before touching any storage, so a typo costs nothing.
            let event = build_event(&source, &detail_type, resources, &detail)?;
            return with_bus(&config, |bus| async move {
                bus.publish(std::slice::from_ref(&event)).await?;
                println!("published {} ({} {})", event.id, event.source, event.detail_type);
                Ok(())
            })
            .await;
        }
        EventsCommand::Replay { rule, from, to } => {
            let from = parse_time("--from", &from)?;
            let to = match to {
                Some(to) => parse_time("--to", &to)?,
                None => Timestamp::now(),
            };
            anyhow::ensure!(from < to, "--from ({from}) must be before --to ({to})");
            with_bus(&config, |bus| async move {
                let n = bus.replay(&rule, from, to).await?;
                println!("queued {n} archived events from {from} to {to} for {rule}");
                Ok(())
            })
            .await
        }
        EventsCommand::Rules { json } => {
            with_bus(&config, |bus| async move {
                let rules = bus.known_rules().await?;
                print_rules(&rules, json)
            })
            .await
        }
        EventsCommand::Dlq {
            command: DlqCommand::List { rule, limit, json },
        } => {
            anyhow::ensure!(limit > 0, "--limit must be at least 1");
            with_bus(&config, |bus| async move {
                // One more than shown, to say whether there are more.
                let mut letters = bus
                    .first_dead_letters(rule.as_deref(), limit.saturating_add(1))
                    .await?;
                let more = letters.len() > limit;
                letters.truncate(limit);
                print_letters(&letters, more, json)
            })
            .await
        }
        EventsCommand::Dlq {
            command: DlqCommand::Purge { rule },
        } => {
            with_bus(&config, |bus| async move {
                let n = bus.purge(rule.as_deref()).await?;
                let whose = rule.map_or("every rule".to_owned(), |r| format!("rule {r}"));
                println!("purged {n} dead letters of {whose}");
                Ok(())
            })
            .await
        }
        EventsCommand::Dlq {
            command: DlqCommand::Redrive { rule },
        } => {
            with_bus(&config, |bus| async move {
                let n = bus.redrive(rule.as_deref()).await?;
                let whose = rule.map_or("every rule".to_owned(), |r| format!("rule {r}"));
                println!("redrove {n} dead letters of {whose}; the server delivers them again");
                Ok(())
            })
            .await
        }
    }
}

/// Opens the bus the server uses, runs `f`, closes what it opened.
async fn with_bus<F, Fut>(config: &Config, f: F) -> anyhow::Result<()>
where
    F: FnOnce(Bus) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let target = StorageTarget::from_url(config.database_url.as_deref(), config.data_dir.clone())?;
    let (bus, db) = app::open_bus(config, &target).await?;
    let result = f(bus).await;
    if let Some(db) = db {
        db.close().await;
    }
    result
}

/// The event `ecom events put` publishes, or what is wrong with its flags.
fn build_event(
    source: &str,
    detail_type: &str,
    resources: Vec<String>,
    detail: &str,
) -> anyhow::Result<Event> {
    anyhow::ensure!(
        !source.trim().is_empty(),
        "--source must name who emits the event, e.g. ecommerce.orders"
    );
    anyhow::ensure!(
        !detail_type.trim().is_empty(),
        "--detail-type must say what happened, e.g. OrderCreated"
    );
    let detail: serde_json::Value = serde_json::from_str(detail).map_err(|e| {
        anyhow::anyhow!("--detail is not valid JSON ({e}); give an object such as '{{\"orderId\":\"o-1\"}}'")
    })?;
    anyhow::ensure!(
        detail.is_object(),
        "--detail must be a JSON object such as '{{\"orderId\":\"o-1\"}}', not {detail}"
    );
    Ok(Event::new(source, detail_type, resources, detail))
}

fn parse_time(flag: &str, text: &str) -> anyhow::Result<Timestamp> {
    Timestamp::parse(text).map_err(|e| anyhow::anyhow!("{flag}: {e}, e.g. 2026-11-25T10:00:00Z"))
}

fn print_rules(rules: &[RuleInfo], json: bool) -> anyhow::Result<()> {
    if json {
        for rule in rules {
            println!("{}", serde_json::to_string(rule)?);
        }
        return Ok(());
    }
    if rules.is_empty() {
        println!("no rules yet (rules are registered when a server starts)");
        return Ok(());
    }
    let width = rules.iter().map(|r| r.name.len()).max().unwrap_or(0).max(4);
    println!("{:<width$}  PATTERN", "RULE");
    for rule in rules {
        println!("{:<width$}  {}", rule.name, rule.pattern);
    }
    Ok(())
}

fn print_letters(letters: &[DeadLetter], more: bool, json: bool) -> anyhow::Result<()> {
    if json {
        for letter in letters {
            println!("{}", serde_json::to_string(letter)?);
        }
        return Ok(());
    }
    if letters.is_empty() {
        println!("no dead letters");
        return Ok(());
    }
    println!(
        "{:<32} {:<36} {:<40} {:>8}  {:<27} LAST ERROR",
        "RULE", "EVENT", "SOURCE / DETAIL-TYPE", "ATTEMPTS", "FAILED AT"
    );
    for l in letters {
        let what = format!("{} {}", l.event.source, l.event.detail_type);
        let error = l.last_error.replace('\n', " ");
        println!(
            "{:<32} {:<36} {:<40} {:>8}  {:<27} {}",
            l.rule, l.event.id, what, l.attempts, l.failed_at, error
        );
    }
    if more {
        println!(
            "the oldest {} dead letters shown, there are more (--limit N shows more); \
             `ecom events dlq redrive [--rule R]` delivers them again",
            letters.len()
        );
    } else {
        println!(
            "{} dead letters; `ecom events dlq redrive [--rule R]` delivers them again",
            letters.len()
        );
    }
    Ok(())
}

/// The listener URL of the server this configuration describes. A server
/// listening on every interface is reached on the loopback one.
fn listener_url(config: &Config) -> String {
    let mut addr = config.listen;
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    format!("ws://{addr}/platform/listener")
}

async fn tail(config: &Config, source: Option<String>) -> anyhow::Result<()> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
    let url = listener_url(config);
    // The listener is for staff: present a service credential made from the
    // service key this command shares with the server.
    let key = ServiceKey::load_or_create(config.service_key.as_deref(), &config.data_dir)?;
    let mut request = url.as_str().into_client_request().context("Bad listener URL")?;
    let bearer = format!("Bearer {}", key.issue("cli")?);
    request
        .headers_mut()
        .insert("authorization", bearer.parse().context("Bad service credential")?);
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await.with_context(|| {
        format!("Failed to reach the server's listener at {url}; is `ecom up` running (see --listen)?")
    })?;
    let register = serde_json::json!({
        "action": "register",
        "serviceName": source.as_deref().unwrap_or("*"),
    });
    socket
        .send(Message::Text(register.to_string().into()))
        .await
        .context("Failed to register with the listener")?;
    eprintln!(
        "watching {} at {url} (Ctrl-C to stop)",
        source
            .as_deref()
            .map_or("every source".to_owned(), |s| format!("source {s}"))
    );
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return Ok(()),
            message = socket.next() => match message {
                Some(Ok(Message::Text(text))) => println!("{text}"),
                Some(Ok(Message::Close(_))) | None => anyhow::bail!("the server closed the listener"),
                Some(Ok(_)) => {}
                Some(Err(e)) => anyhow::bail!("lost the connection to the server ({e})"),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_refuses_bad_flags_with_what_is_wrong() {
        let cases = [
            ("", "OrderCreated", "{}", "--source must name"),
            ("ecommerce.orders", " ", "{}", "--detail-type must say"),
            (
                "ecommerce.orders",
                "OrderCreated",
                "{oops",
                "--detail is not valid JSON",
            ),
            (
                "ecommerce.orders",
                "OrderCreated",
                "[1]",
                "--detail must be a JSON object",
            ),
        ];
        for (source, detail_type, detail, want) in cases {
            let err = build_event(source, detail_type, vec![], detail)
                .err()
                .map(|e| e.to_string());
            assert!(
                err.as_deref().is_some_and(|e| e.contains(want)),
                "{detail}: {err:?}"
            );
        }
        let event = build_event(
            "ecommerce.orders",
            "OrderCreated",
            vec!["o-1".into()],
            r#"{"a":1}"#,
        );
        let event = event.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(event.resources, vec!["o-1"]);
        assert_eq!(event.detail.value()["a"], 1);
    }

    #[test]
    fn tail_reaches_a_server_listening_everywhere_on_loopback() {
        let mut config = Config::merge(&Default::default(), Default::default(), &[], |_| None)
            .unwrap_or_else(|e| panic!("{e}"));
        config.listen = "0.0.0.0:9000".parse().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(listener_url(&config), "ws://127.0.0.1:9000/platform/listener");
    }
}
