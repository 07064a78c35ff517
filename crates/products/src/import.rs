//! Loading a catalogue file: a JSON array of products, each created or
//! updated through [`crate::store::upsert`] (so with its events), each
//! refused one reported with the reason, the others still loaded.

use crate::domain::{parse_value, ProductInput};
use crate::store::{self, StoreError, Upserted};
use anyhow::Context as _;
use ecom_platform::Outbox;
use ecom_storage::Db;
use serde_json::Value;
use std::fmt;

/// What an import did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ImportReport {
    /// Products that were new.
    pub created: usize,
    /// Products that existed and changed.
    pub updated: usize,
    /// Products that existed exactly as given.
    pub unchanged: usize,
    /// Refused products: the reason, naming the element and the field.
    pub refused: Vec<String>,
}

impl fmt::Display for ImportReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "created {}, updated {}, unchanged {}, refused {}",
            self.created,
            self.updated,
            self.unchanged,
            self.refused.len()
        )?;
        for reason in &self.refused {
            write!(f, "\n  refused {reason}")?;
        }
        Ok(())
    }
}

/// Imports `text`, a JSON array of products. Only a file that is not such
/// an array, or a database failure, is an error; bad products are refused
/// one by one.
pub async fn import(db: &Db, outbox: &Outbox, text: &str) -> anyhow::Result<ImportReport> {
    let items: Vec<Value> = match serde_json::from_str::<Value>(text) {
        Ok(Value::Array(items)) => items,
        Ok(other) => anyhow::bail!(
            "the file holds a JSON {}; it must hold a JSON array of products, like [{{\"name\": \"Mug\", \"price\": 900, \"package\": {{…}}}}]",
            kind(&other)
        ),
        Err(e) => return Err(e).context("the file is not JSON"),
    };
    let mut report = ImportReport::default();
    for (i, item) in items.iter().enumerate() {
        let label = match item.get("name").and_then(Value::as_str) {
            Some(name) => format!("[{i}] '{name}'"),
            None => format!("[{i}]"),
        };
        if !item.is_object() {
            report
                .refused
                .push(format!("{label}: must be a JSON object (a product)"));
            continue;
        }
        let input = match parse_value::<ProductInput>(item, "") {
            Ok(input) => input,
            Err(reason) => {
                report.refused.push(format!("{label}: {reason}"));
                continue;
            }
        };
        match store::upsert(db, outbox, input).await {
            Ok(Upserted::Created(_)) => report.created += 1,
            Ok(Upserted::Updated(_)) => report.updated += 1,
            Ok(Upserted::Unchanged(_)) => report.unchanged += 1,
            // Another writer created this id between our read and our
            // insert (PostgreSQL, imports running at once): report, go on.
            Err(e @ StoreError::Exists(_)) => report.refused.push(format!("{label}: {e}")),
            Err(e) => return Err(anyhow::Error::new(e).context(format!("Failed to import {label}"))),
        }
    }
    Ok(report)
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Object(_) => "object",
        Value::String(_) => "string",
        Value::Number(_) => "number",
        Value::Bool(_) => "boolean",
        Value::Null => "null",
        Value::Array(_) => "array",
    }
}
