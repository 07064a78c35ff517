//! How many password checks (the cost of a sign-in) the machine does per
//! second with the argon2id parameters in use, on one core and on all.
//!
//! `cargo bench -p ecom-users --bench sign_in`
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Instant;

fn main() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let hash = ecom_users::passwords::hash("Sup3r-secret").await.unwrap();
        println!("parameters: {}", hash.split('$').nth(3).unwrap_or("?"));
        let n = 40;
        let start = Instant::now();
        for _ in 0..n {
            assert!(ecom_users::passwords::verify("Sup3r-secret", Some(hash.clone()))
                .await
                .unwrap());
        }
        let took = start.elapsed();
        println!(
            "one at a time: {n} checks in {took:.2?}: {:.1}/s ({:.1} ms each)",
            n as f64 / took.as_secs_f64(),
            took.as_secs_f64() * 1e3 / n as f64
        );
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        let start = Instant::now();
        let tasks: Vec<_> = (0..n)
            .map(|_| {
                let hash = hash.clone();
                tokio::spawn(async move { ecom_users::passwords::verify("Sup3r-secret", Some(hash)).await })
            })
            .collect();
        for t in tasks {
            assert!(t.await.unwrap().unwrap());
        }
        let took = start.elapsed();
        println!(
            "all {cores} cores: {n} checks in {took:.2?}: {:.1}/s",
            n as f64 / took.as_secs_f64()
        );
    });
}
