//! A structural check of a value against the JSON Schemas of the
//! catalogue: `type`, `required`, `properties`, `additionalProperties`,
//! `items`, `enum`, `const`, `minimum`, `anyOf`/`oneOf`/`allOf`, `$ref`
//! within the document, and the `uuid` format. `pattern` and the other
//! formats are not checked. Enough to catch a payload that does not match
//! its contract (a renamed, missing or mistyped field) without a schema
//! validator dependency; the tests check emitted events with it, and
//! anyone holding a hand-made event (`ecom events put`) can too.

use crate::catalogue::channel_id;
use serde_json::Value;

/// Checks `detail` against the payload schema of `source`/`detail_type` in
/// `document` (an [`crate::asyncapi`] document). The error lists every
/// mismatch with its JSON path.
pub fn check_detail(document: &Value, source: &str, detail_type: &str, detail: &Value) -> Result<(), String> {
    let pointer = format!(
        "/channels/{}/messages/{}/payload",
        escape(&channel_id(source, detail_type)),
        escape(detail_type)
    );
    let schema = document
        .pointer(&pointer)
        .ok_or_else(|| format!("no event {source}/{detail_type} in the catalogue"))?;
    let mut errors = Vec::new();
    check(document, schema, detail, "$", &mut errors);
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.join("; "))
    }
}

fn escape(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

fn type_matches(name: &str, value: &Value) -> bool {
    match name {
        "null" => value.is_null(),
        "boolean" => value.is_boolean(),
        "integer" => value.is_i64() || value.is_u64(),
        "number" => value.is_number(),
        "string" => value.is_string(),
        "array" => value.is_array(),
        "object" => value.is_object(),
        _ => true,
    }
}

fn check(document: &Value, schema: &Value, value: &Value, path: &str, errors: &mut Vec<String>) {
    let schema = match schema {
        Value::Bool(true) => return,
        Value::Bool(false) => return errors.push(format!("{path}: no value is allowed here")),
        Value::Object(schema) => schema,
        _ => return errors.push(format!("{path}: the schema is not an object")),
    };
    if let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
        match reference.strip_prefix('#').and_then(|p| document.pointer(p)) {
            Some(target) => check(document, target, value, path, errors),
            None => errors.push(format!("{path}: unresolved $ref {reference}")),
        }
    }
    match schema.get("type") {
        Some(Value::String(name)) if !type_matches(name, value) => {
            return errors.push(format!("{path}: expected {name}, got {value}"));
        }
        Some(Value::Array(names))
            if !names
                .iter()
                .any(|n| n.as_str().is_some_and(|n| type_matches(n, value))) =>
        {
            return errors.push(format!("{path}: expected one of {names:?}, got {value}"));
        }
        _ => {}
    }
    if let Some(Value::Array(allowed)) = schema.get("enum") {
        if !allowed.contains(value) {
            errors.push(format!("{path}: {value} is not one of {allowed:?}"));
        }
    }
    if let Some(constant) = schema.get("const") {
        if constant != value {
            errors.push(format!("{path}: expected {constant}, got {value}"));
        }
    }
    if let (Some(minimum), Some(n)) = (schema.get("minimum").and_then(Value::as_f64), value.as_f64()) {
        if n < minimum {
            errors.push(format!("{path}: {n} is below the minimum {minimum}"));
        }
    }
    if schema.get("format").and_then(Value::as_str) == Some("uuid") {
        if let Some(text) = value.as_str() {
            if uuid::Uuid::parse_str(text).is_err() {
                errors.push(format!("{path}: '{text}' is not a UUID"));
            }
        }
    }
    if let Some(object) = value.as_object() {
        if let Some(Value::Array(required)) = schema.get("required") {
            for name in required.iter().filter_map(Value::as_str) {
                if !object.contains_key(name) {
                    errors.push(format!("{path}: missing field {name}"));
                }
            }
        }
        let properties = schema.get("properties").and_then(Value::as_object);
        for (name, field) in object {
            let field_path = format!("{path}.{name}");
            match (
                properties.and_then(|p| p.get(name)),
                schema.get("additionalProperties"),
            ) {
                (Some(sub), _) => check(document, sub, field, &field_path, errors),
                (None, Some(Value::Bool(false))) => errors.push(format!("{field_path}: unknown field")),
                (None, Some(extra)) => check(document, extra, field, &field_path, errors),
                (None, None) => {}
            }
        }
    }
    if let (Some(items), Some(array)) = (schema.get("items"), value.as_array()) {
        for (i, item) in array.iter().enumerate() {
            check(document, items, item, &format!("{path}[{i}]"), errors);
        }
    }
    let passes = |sub: &Value| {
        let mut inner = Vec::new();
        check(document, sub, value, path, &mut inner);
        inner.is_empty()
    };
    if let Some(Value::Array(all)) = schema.get("allOf") {
        for sub in all {
            check(document, sub, value, path, errors);
        }
    }
    if let Some(Value::Array(any)) = schema.get("anyOf") {
        if !any.iter().any(passes) {
            errors.push(format!("{path}: matches none of anyOf"));
        }
    }
    if let Some(Value::Array(one)) = schema.get("oneOf") {
        if one.iter().filter(|s| passes(s)).count() != 1 {
            errors.push(format!("{path}: does not match exactly one of oneOf"));
        }
    }
}
