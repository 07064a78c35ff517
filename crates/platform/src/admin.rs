//! The bus's admin routes, for the staff console (and anyone with an
//! admin's ID token and curl): what `ecom events rules` and `ecom events dlq
//! list|redrive|purge` do, over HTTP, because a browser cannot run the CLI.
//!
//! - `GET /platform/rules` → `{"rules":[{name, pattern, deadLetters}], "countsComplete"}`
//! - `GET /platform/dead-letters?rule=R&limit=N` → `{"deadLetters":[…], "more"}`
//! - `POST /platform/dead-letters/redrive {"rule"?}` → `{"redriven": n}`
//! - `POST /platform/dead-letters/purge {"rule"?}` → `{"purged": n}`
//!
//! Dead letters hold whole events (addresses, emails, payment tokens), so
//! every route needs the ID token of a user in the `admin` group: 401
//! without one, 403 for anyone else. A service credential is not taken:
//! services have the bus itself and no reason to call these.

use crate::Bus;
use axum::extract::State;
use axum::routing::{get, post};
use axum::Router;
use ecom_contracts::Group;
use ecom_runtime::auth::User;
use ecom_runtime::extract::{Json, Query};
use ecom_runtime::ApiError;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// Dead letters listed when `limit` is not given.
const DEFAULT_LIMIT: usize = 50;
/// Most dead letters one listing reads: each carries a whole event.
const MAX_LIMIT: usize = 500;
/// Most dead letters read to count them per rule. A queue longer than this
/// is an incident the counts need not measure exactly; reading all of it on
/// every page view would make the console the next one.
const COUNT_CAP: usize = 10_000;
/// Longest rule name accepted: real ones (`<service>.<what>`) are far shorter.
const MAX_RULE_CHARS: usize = 200;

/// The admin routes, to merge into the app's router (which carries the
/// `Verifier` extension that [`User`] needs).
pub fn router(bus: Bus) -> Router {
    Router::new()
        .route("/platform/rules", get(rules))
        .route("/platform/dead-letters", get(dead_letters))
        .route("/platform/dead-letters/redrive", post(redrive))
        .route("/platform/dead-letters/purge", post(purge))
        .with_state(bus)
}

fn admin(user: &User) -> Result<(), ApiError> {
    user.0.require_group(Group::ADMINS)
}

/// A rule name as given by a caller: trimmed, not empty, not absurdly long.
fn rule_name(rule: Option<&str>) -> Result<Option<&str>, ApiError> {
    let Some(rule) = rule.map(str::trim) else {
        return Ok(None);
    };
    if rule.is_empty() {
        return Err(ApiError::bad_request(
            "rule: must name a rule, e.g. warehouse.on-order-created (leave it out for every rule)",
        ));
    }
    if rule.chars().count() > MAX_RULE_CHARS {
        return Err(ApiError::bad_request(format!(
            "rule: longer than {MAX_RULE_CHARS} characters; no rule has such a name"
        )));
    }
    Ok(Some(rule))
}

/// 404 unless the bus knows `rule` or holds dead letters of it (a rule a
/// newer build dropped can still have some to purge).
async fn known(bus: &Bus, rule: Option<&str>) -> Result<(), ApiError> {
    let Some(rule) = rule else { return Ok(()) };
    let rules = bus.known_rules().await.map_err(ApiError::internal)?;
    if rules.iter().any(|r| r.name == rule) {
        return Ok(());
    }
    let letters = bus
        .first_dead_letters(Some(rule), 1)
        .await
        .map_err(ApiError::internal)?;
    if letters.is_empty() {
        return Err(ApiError::not_found(format!("unknown rule '{rule}'")));
    }
    Ok(())
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct RuleRow {
    name: String,
    pattern: String,
    dead_letters: usize,
}

#[tracing::instrument(skip_all)]
async fn rules(State(bus): State<Bus>, user: User) -> Result<Json<Value>, ApiError> {
    admin(&user)?;
    let rules = bus.known_rules().await.map_err(ApiError::internal)?;
    let letters = bus
        .first_dead_letters(None, COUNT_CAP + 1)
        .await
        .map_err(ApiError::internal)?;
    let complete = letters.len() <= COUNT_CAP;
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for letter in letters.iter().take(COUNT_CAP) {
        *counts.entry(letter.rule.as_str()).or_default() += 1;
    }
    let rows: Vec<RuleRow> = rules
        .into_iter()
        .map(|r| RuleRow {
            dead_letters: counts.get(r.name.as_str()).copied().unwrap_or(0),
            name: r.name,
            pattern: r.pattern,
        })
        .collect();
    Ok(Json(json!({ "rules": rows, "countsComplete": complete })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    rule: Option<String>,
    limit: Option<String>,
}

/// `limit` from the query string: 1 to [`MAX_LIMIT`], or the default.
fn limit(text: Option<&str>) -> Result<usize, ApiError> {
    let Some(text) = text else {
        return Ok(DEFAULT_LIMIT);
    };
    match text.trim().parse::<usize>() {
        Ok(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
        _ => Err(ApiError::bad_request(format!(
            "limit: must be a whole number from 1 to {MAX_LIMIT}, got '{text}'"
        ))),
    }
}

#[tracing::instrument(skip_all)]
async fn dead_letters(
    State(bus): State<Bus>,
    user: User,
    Query(query): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    admin(&user)?;
    let rule = rule_name(query.rule.as_deref())?;
    let limit = limit(query.limit.as_deref())?;
    known(&bus, rule).await?;
    // One more than shown, to say whether there are more.
    let mut letters = bus
        .first_dead_letters(rule, limit + 1)
        .await
        .map_err(ApiError::internal)?;
    let more = letters.len() > limit;
    letters.truncate(limit);
    Ok(Json(json!({ "deadLetters": letters, "more": more })))
}

/// Which dead letters an action is for: one rule's, or every rule's when
/// `rule` is left out.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Which {
    rule: Option<String>,
}

/// The body of a redrive or purge, where an empty body means "every rule".
fn which(body: &axum::body::Bytes) -> Result<Which, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Which::default());
    }
    ecom_runtime::extract::parse_json(body)
}

#[tracing::instrument(skip_all)]
async fn redrive(
    State(bus): State<Bus>,
    user: User,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    admin(&user)?;
    let which = which(&body)?;
    let rule = rule_name(which.rule.as_deref())?;
    known(&bus, rule).await?;
    let n = bus.redrive(rule).await.map_err(ApiError::internal)?;
    tracing::info!(rule = rule.unwrap_or("*"), redriven = n, admin = %user.0.sub, "dead letters redriven");
    Ok(Json(json!({ "redriven": n })))
}

#[tracing::instrument(skip_all)]
async fn purge(State(bus): State<Bus>, user: User, body: axum::body::Bytes) -> Result<Json<Value>, ApiError> {
    admin(&user)?;
    let which = which(&body)?;
    let rule = rule_name(which.rule.as_deref())?;
    known(&bus, rule).await?;
    let n = bus.purge(rule).await.map_err(ApiError::internal)?;
    tracing::info!(rule = rule.unwrap_or("*"), purged = n, admin = %user.0.sub, "dead letters purged");
    Ok(Json(json!({ "purged": n })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_and_rule_names_are_checked_with_a_reason() {
        assert_eq!(limit(None).ok(), Some(DEFAULT_LIMIT));
        assert_eq!(limit(Some("7")).ok(), Some(7));
        for bad in ["0", "-1", "501", "ten", ""] {
            let err = limit(Some(bad))
                .err()
                .map(|e| (e.status().as_u16(), e.message().to_owned()));
            assert!(
                err.as_ref()
                    .is_some_and(|(s, m)| *s == 400 && m.starts_with("limit:")),
                "{bad}: {err:?}"
            );
        }
        assert_eq!(rule_name(None).ok(), Some(None));
        assert_eq!(rule_name(Some(" a.b ")).ok(), Some(Some("a.b")));
        for bad in [" ".to_owned(), "x".repeat(MAX_RULE_CHARS + 1)] {
            let err = rule_name(Some(&bad)).err().map(|e| e.status().as_u16());
            assert_eq!(err, Some(400), "{bad}");
        }
    }

    #[test]
    fn an_empty_body_means_every_rule_and_a_stray_field_is_refused() {
        let parse = |s: &'static str| which(&axum::body::Bytes::from_static(s.as_bytes()));
        assert_eq!(parse("").ok().map(|w| w.rule), Some(None));
        assert_eq!(parse("{}").ok().map(|w| w.rule), Some(None));
        assert_eq!(
            parse(r#"{"rule":"a.b"}"#).ok().map(|w| w.rule),
            Some(Some("a.b".to_owned()))
        );
        for bad in [r#"{"rules":"a.b"}"#, "[1]", "{oops"] {
            assert_eq!(parse(bad).err().map(|e| e.status().as_u16()), Some(400), "{bad}");
        }
    }
}
