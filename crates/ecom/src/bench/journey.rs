//! The `journey` scenario of `ecom bench`: SPEC "The whole journey", from the
//! shopper's pre-authorisation to the processed payment, over the REST routes
//! of the platform booted in process or, with `--url`, of a running one
//! (whose database `--database-url` / `--data-dir` names, for the staff users).
//!
//! Closed loop: each connection (one keep-alive HTTP/1.1 connection, a fresh
//! one after a failed journey) runs one journey after the other until the
//! end of the run:
//!
//! 1. `POST /payment-3p/preauth` of the order's total. Processing the payment
//!    at the end of the journey consumes the token at payment-3p, so each
//!    journey needs its own: a shared one would fail the payment check of
//!    every order created after the first journey ends.
//! 2. `POST /orders/backend/orders` with a service credential, as the
//!    gateway calls it: the order of `create-order`, paid by that token.
//!    Timed on its own too.
//! 3. A warehouse clerk (group `warehouse`) polls
//!    `GET /warehouse/packaging-requests/{orderId}` until the request exists
//!    (the read of one request rather than the list of new ids, whose length
//!    grows with the connections), then `startPackaging`, `completePackaging`.
//! 4. A courier (group `delivery`) polls `GET /delivery/deliveries/{orderId}`
//!    until the delivery exists, then `startDelivery`, `completeDelivery`.
//! 5. Polls `GET /orders/backend/{orderId}` until the order is `FULFILLED`
//!    (the card processor confirmed the capture of its total), then asks
//!    payment-3p's merchant `POST /payment-3p/status` (service credential)
//!    that the token was captured for this order, its whole total.
//!
//! Polling sleeps `--poll-ms` (2 ms by default) after each answer that shows
//! the state not reached yet. Polls are requests served on the same cores as
//! the journeys, so they cost the platform too: the output gives their
//! number per journey. The staff users are made as `ecom users add` makes
//! them and signed in once, before the run.
//!
//! A journey not done within 10 s, or any unexpected answer, is an error;
//! errors are counted over the whole run (warm-up included) and printed once
//! per kind (the step and what went wrong) with the first one's detail.
//! Journeys count when they end within the measured window (after one second
//! of warm-up); createOrder requests when they are sent within it. A journey
//! still running at the end is finished but not counted.

use super::{order_request, percentile_ms, BenchArgs, JsonClient};
use anyhow::Context as _;
use axum::body::Bytes;
use ecom_contracts::Group;
use ecom_runtime::ServiceKey;
use ecom_storage::StorageTarget;
use hyper::{Method, StatusCode};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Longest a journey may take before it counts as an error.
const TIMEOUT: Duration = Duration::from_secs(10);

/// Password of the staff users the scenario makes.
const PASSWORD: &str = "Bench-pass-1";

/// What every journey needs, prepared once.
struct Plan {
    /// The order request; its `paymentToken` is set per journey.
    order: Value,
    /// What the order costs, to pre-authorise.
    total: i64,
    /// Service credential for the orders backend routes and payment-3p's
    /// merchant routes.
    service: String,
    /// ID token of a user in group `warehouse`.
    clerk: String,
    /// ID token of a user in group `delivery`.
    courier: String,
    /// Sleep between two polls.
    poll: Duration,
}

/// Where a journey is; names the errors.
#[derive(Debug, Clone, Copy)]
enum Step {
    Preauth,
    CreateOrder,
    PackagingRequest,
    StartPackaging,
    CompletePackaging,
    Delivery,
    StartDelivery,
    CompleteDelivery,
    Fulfilled,
    PaymentProcessed,
}

impl Step {
    fn describe(self) -> &'static str {
        match self {
            Step::Preauth => "pre-authorising",
            Step::CreateOrder => "createOrder",
            Step::PackagingRequest => "awaiting the packaging request",
            Step::StartPackaging => "startPackaging",
            Step::CompletePackaging => "completePackaging",
            Step::Delivery => "awaiting the delivery",
            Step::StartDelivery => "startDelivery",
            Step::CompleteDelivery => "completeDelivery",
            Step::Fulfilled => "awaiting FULFILLED",
            Step::PaymentProcessed => "awaiting the processed payment",
        }
    }
}

/// A failed journey: `kind` groups the errors, `detail` tells one of them.
struct Failure {
    kind: String,
    detail: String,
}

impl Failure {
    fn answer(step: Step, status: StatusCode, body: &Value) -> Failure {
        Failure {
            kind: format!("{}: HTTP {}", step.describe(), status.as_u16()),
            detail: format!("{status} {body}"),
        }
    }
}

/// What one connection saw.
#[derive(Default)]
struct Tally {
    /// Journeys that ended in the window: (latency µs, polls).
    journeys: Vec<(u32, u32)>,
    /// createOrder requests sent in the window that created an order: latency µs.
    creates: Vec<u32>,
    /// Every failed journey of the run.
    failures: Vec<Failure>,
}

/// Runs the scenario against the platform at `authority`, whose data is at `target`.
pub async fn run(
    args: &BenchArgs,
    authority: &str,
    key: &ServiceKey,
    target: &StorageTarget,
) -> anyhow::Result<()> {
    let clerk = staff(target, authority, "bench-clerk@example.com", Group::Warehouse).await?;
    let courier = staff(target, authority, "bench-courier@example.com", Group::Delivery).await?;
    let order = order_request("pre-authorised by each journey")?;
    let plan = Arc::new(Plan {
        total: order_total(&order)?,
        order,
        service: key.issue("bench")?,
        clerk,
        courier,
        poll: Duration::from_millis(args.poll_ms),
    });
    println!(
        "ecom bench {:?}: {} connections, {} s, polling every {} ms against http://{authority}",
        args.scenario, args.connections, args.duration, args.poll_ms
    );

    let measure_from = Instant::now() + Duration::from_secs(1);
    let end = measure_from + Duration::from_secs(args.duration);
    let mut tasks = Vec::new();
    for _ in 0..args.connections {
        let (plan, authority) = (plan.clone(), authority.to_owned());
        tasks.push(tokio::spawn(async move {
            worker(&plan, &authority, measure_from, end).await
        }));
    }
    let mut all = Tally::default();
    for t in tasks {
        let tally = t.await.context("a journey connection panicked")??;
        all.journeys.extend(tally.journeys);
        all.creates.extend(tally.creates);
        all.failures.extend(tally.failures);
    }

    let mut latencies: Vec<u32> = all.journeys.iter().map(|(us, _)| *us).collect();
    latencies.sort_unstable();
    all.creates.sort_unstable();
    let polls: u64 = all.journeys.iter().map(|(_, p)| u64::from(*p)).sum();
    let done = all.journeys.len();
    println!(
        "journeys: {done}  errors: {}  throughput: {:.0} journeys/s  polls per journey: {:.1}",
        all.failures.len(),
        done as f64 / args.duration as f64,
        polls as f64 / done.max(1) as f64
    );
    println!(
        "journey latency p50: {:.2} ms  p99: {:.2} ms  max: {:.2} ms",
        percentile_ms(&latencies, 0.50),
        percentile_ms(&latencies, 0.99),
        percentile_ms(&latencies, 1.0)
    );
    println!(
        "createOrder within journeys: {} requests  p50: {:.2} ms  p99: {:.2} ms  max: {:.2} ms",
        all.creates.len(),
        percentile_ms(&all.creates, 0.50),
        percentile_ms(&all.creates, 0.99),
        percentile_ms(&all.creates, 1.0)
    );
    let mut kinds: BTreeMap<String, (u64, String)> = BTreeMap::new();
    for failure in all.failures {
        kinds.entry(failure.kind).or_insert((0, failure.detail)).0 += 1;
    }
    if !kinds.is_empty() {
        println!("errors by kind (whole run, warm-up included):");
    }
    for (kind, (count, first)) in kinds {
        println!("  {count} × {kind}; first: {first}");
    }
    Ok(())
}

/// Makes a user in `group` (as `ecom users add` does) and signs them in; the
/// ID token. A user an earlier run against the same deployment made is
/// signed in as it is.
async fn staff(target: &StorageTarget, authority: &str, email: &str, group: Group) -> anyhow::Result<String> {
    if let Some(token) = sign_in(authority, email).await?.0 {
        return Ok(token);
    }
    crate::cli::users::add(target, email, PASSWORD, &[group.to_string()]).await?;
    match sign_in(authority, email).await? {
        (Some(token), _) => Ok(token),
        (None, failure) => anyhow::bail!("signing {email} in failed: {failure}"),
    }
}

/// Signs a staff user in: the ID token, or what was answered instead.
async fn sign_in(authority: &str, email: &str) -> anyhow::Result<(Option<String>, String)> {
    let body = json!({ "email": email, "password": PASSWORD }).to_string().into();
    let (status, answer) = JsonClient::connect(authority)
        .await?
        .send(Method::POST, "/users/sign-in", None, body)
        .await?;
    let token = answer["idToken"].as_str().map(str::to_owned);
    Ok((token, format!("{status} {answer}")))
}

/// What the order costs: Σ price × quantity (1 when absent) + deliveryPrice.
pub(super) fn order_total(order: &Value) -> anyhow::Result<i64> {
    let lines = order["products"]
        .as_array()
        .context("the order has no products")?;
    let mut total = order["deliveryPrice"]
        .as_i64()
        .context("the order has no deliveryPrice")?;
    for line in lines {
        let price = line["price"].as_i64().context("a product has no price")?;
        let quantity = line.get("quantity").map_or(Some(1), Value::as_i64);
        total = quantity
            .and_then(|q| price.checked_mul(q))
            .and_then(|line_total| total.checked_add(line_total))
            .context("a product has a bad quantity, or the total overflows")?;
    }
    Ok(total)
}

fn micros(d: Duration) -> u32 {
    d.as_micros().min(u128::from(u32::MAX)) as u32
}

/// One connection: journeys until `end`.
async fn worker(plan: &Plan, authority: &str, measure_from: Instant, end: Instant) -> anyhow::Result<Tally> {
    let mut tally = Tally::default();
    let mut client = None;
    while Instant::now() < end {
        let mut conn = match client.take() {
            Some(conn) => conn,
            None => JsonClient::connect(authority).await?,
        };
        let started = Instant::now();
        let mut step = Step::Preauth;
        let outcome = tokio::time::timeout(
            TIMEOUT,
            journey(
                &mut conn,
                plan,
                &mut step,
                &mut tally.creates,
                (measure_from, end),
            ),
        )
        .await;
        let ended = Instant::now();
        match outcome {
            Ok(Ok(polls)) => {
                if ended >= measure_from && ended < end {
                    tally.journeys.push((micros(ended - started), polls));
                }
                client = Some(conn);
            }
            // The connection is dropped: a request may still be in flight on it.
            Ok(Err(failure)) => tally.failures.push(failure),
            Err(_) => tally.failures.push(Failure {
                kind: format!("{}: timed out", step.describe()),
                detail: format!("the journey did not end within {} s", TIMEOUT.as_secs()),
            }),
        }
    }
    Ok(tally)
}

/// One journey; the number of polls it took. `step` follows it, for the
/// caller to name a timeout; the createOrder latency goes to `creates` when
/// it was sent within `window`.
async fn journey(
    client: &mut JsonClient,
    plan: &Plan,
    step: &mut Step,
    creates: &mut Vec<u32>,
    window: (Instant, Instant),
) -> Result<u32, Failure> {
    let mut polls = 0;
    *step = Step::Preauth;
    let preauth = json!({ "cardNumber": "4242424242424242", "amount": plan.total });
    let (status, body) = call(client, *step, Method::POST, "/payment-3p/preauth", None, &preauth).await?;
    let token = match body["paymentToken"].as_str() {
        Some(token) if status == StatusCode::OK => token.to_owned(),
        _ => return Err(Failure::answer(*step, status, &body)),
    };

    *step = Step::CreateOrder;
    let mut order = plan.order.clone();
    order["paymentToken"] = json!(token);
    let request = json!({ "userId": "bench-shopper", "order": order });
    let sent = Instant::now();
    let (status, body) = call(
        client,
        *step,
        Method::POST,
        "/orders/backend/orders",
        Some(&plan.service),
        &request,
    )
    .await?;
    let took = micros(sent.elapsed());
    let order_id = match body["order"]["orderId"].as_str() {
        Some(id) if status == StatusCode::OK && body["success"] == json!(true) => id.to_owned(),
        _ if status == StatusCode::OK => {
            return Err(Failure {
                kind: "createOrder: refused".into(),
                detail: body.to_string(),
            })
        }
        _ => return Err(Failure::answer(*step, status, &body)),
    };
    if sent >= window.0 && sent < window.1 {
        creates.push(took);
    }
    let about = json!({ "orderId": order_id });

    *step = Step::PackagingRequest;
    let path = format!("/warehouse/packaging-requests/{order_id}");
    await_new(client, plan, *step, &mut polls, &path, &plan.clerk).await?;
    *step = Step::StartPackaging;
    expect_ok(client, *step, "/warehouse/startPackaging", &plan.clerk, &about).await?;
    *step = Step::CompletePackaging;
    expect_ok(client, *step, "/warehouse/completePackaging", &plan.clerk, &about).await?;

    *step = Step::Delivery;
    let path = format!("/delivery/deliveries/{order_id}");
    await_new(client, plan, *step, &mut polls, &path, &plan.courier).await?;
    *step = Step::StartDelivery;
    expect_ok(client, *step, "/delivery/startDelivery", &plan.courier, &about).await?;
    *step = Step::CompleteDelivery;
    expect_ok(client, *step, "/delivery/completeDelivery", &plan.courier, &about).await?;

    *step = Step::Fulfilled;
    let path = format!("/orders/backend/{order_id}");
    await_state(
        client,
        plan,
        *step,
        &mut polls,
        Method::GET,
        &path,
        &plan.service,
        None,
        |status, body| match (status, body["order"]["status"].as_str()) {
            (StatusCode::OK, Some("FULFILLED")) => Some(true),
            (StatusCode::OK, Some("NEW" | "PACKAGED")) => Some(false),
            _ => None,
        },
    )
    .await?;

    *step = Step::PaymentProcessed;
    let about_token = json!({ "paymentToken": token });
    await_state(
        client,
        plan,
        *step,
        &mut polls,
        Method::POST,
        "/payment-3p/status",
        &plan.service,
        Some(&about_token),
        |status, body| {
            let captured = body["status"] == "PROCESSED"
                && body["capturedAmount"] == json!(plan.total)
                && body["orderId"] == json!(order_id);
            (status == StatusCode::OK && captured).then_some(true)
        },
    )
    .await?;
    Ok(polls)
}

/// Sends one request; a transport error is a failure of `step`.
async fn call(
    client: &mut JsonClient,
    step: Step,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: &Value,
) -> Result<(StatusCode, Value), Failure> {
    let bytes = if body.is_null() {
        Bytes::new()
    } else {
        body.to_string().into()
    };
    client
        .send(method, path, token, bytes)
        .await
        .map_err(|e| Failure {
            kind: format!("{}: connection error", step.describe()),
            detail: format!("{e:#}"),
        })
}

/// A staff action: `POST path` that must answer 200.
async fn expect_ok(
    client: &mut JsonClient,
    step: Step,
    path: &str,
    token: &str,
    body: &Value,
) -> Result<(), Failure> {
    let (status, answer) = call(client, step, Method::POST, path, Some(token), body).await?;
    if status == StatusCode::OK {
        Ok(())
    } else {
        Err(Failure::answer(step, status, &answer))
    }
}

/// Polls a staff read of what an event creates until it is there: 404
/// until then, and `NEW` when it appears.
async fn await_new(
    client: &mut JsonClient,
    plan: &Plan,
    step: Step,
    polls: &mut u32,
    path: &str,
    token: &str,
) -> Result<(), Failure> {
    await_state(
        client,
        plan,
        step,
        polls,
        Method::GET,
        path,
        token,
        None,
        |status, body| match status {
            StatusCode::NOT_FOUND => Some(false),
            StatusCode::OK => (body["status"] == "NEW").then_some(true),
            _ => None,
        },
    )
    .await
}

/// Sends the request (with `token` unless empty) until `reached` says the
/// state is there (`Some(true)`), sleeping the poll interval after each
/// `Some(false)`; `None` is an unexpected answer.
#[allow(clippy::too_many_arguments)]
async fn await_state(
    client: &mut JsonClient,
    plan: &Plan,
    step: Step,
    polls: &mut u32,
    method: Method,
    path: &str,
    token: &str,
    body: Option<&Value>,
    reached: impl Fn(StatusCode, &Value) -> Option<bool>,
) -> Result<(), Failure> {
    let token = Some(token).filter(|t| !t.is_empty());
    loop {
        let (status, answer) = call(
            client,
            step,
            method.clone(),
            path,
            token,
            body.unwrap_or(&Value::Null),
        )
        .await?;
        match reached(status, &answer) {
            Some(true) => return Ok(()),
            Some(false) => {
                *polls += 1;
                tokio::time::sleep(plan.poll).await;
            }
            None => return Err(Failure::answer(step, status, &answer)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_total_is_the_lines_and_the_delivery_price() -> anyhow::Result<()> {
        let order = json!({
            "products": [{"price": 1299, "quantity": 2}, {"price": 500}],
            "deliveryPrice": 1000,
        });
        assert_eq!(order_total(&order)?, 2 * 1299 + 500 + 1000);
        Ok(())
    }

    #[test]
    fn a_bad_line_has_no_total() {
        let order = json!({"products": [{"price": 1299, "quantity": "2"}], "deliveryPrice": 0});
        assert!(order_total(&order).is_err());
        let order = json!({"products": [{"price": i64::MAX, "quantity": 2}], "deliveryPrice": 0});
        assert!(order_total(&order).is_err());
    }

    #[test]
    fn the_bench_order_has_a_total() -> anyhow::Result<()> {
        let order = order_request("token")?;
        assert!(order_total(&order)? > 0);
        Ok(())
    }
}
