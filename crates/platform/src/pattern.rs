//! Amazon EventBridge event-pattern matching.
//!
//! Rules on the platform's event bus select events with the JSON pattern
//! language of Amazon EventBridge, so rules read the same as on AWS and
//! patterns can be moved between the two. A [`Pattern`] is compiled once from
//! JSON ([`Pattern::parse`]) and then tested against every event
//! ([`Pattern::matches`]); matching walks the compiled tree and the event side
//! by side and does not allocate. [`Pattern::exact_values`] exposes the exact
//! `source`/`detail-type` values a rule accepts, for broker subject filters.
//!
//! Supported: literal strings, numbers, booleans and `null`; `prefix`,
//! `suffix` (both optionally with `equals-ignore-case`), `equals-ignore-case`,
//! `wildcard`, `anything-but`, `exists`, `numeric`, `cidr` (IPv4 and IPv6) and
//! `$or`. Where EventBridge's documentation is silent, or where this module
//! deliberately differs from it, the choices are:
//!
//! - Numbers compare by value (`5` matches `5.0`); EventBridge documents a
//!   comparison of string representations instead.
//! - When the event holds an array, a leaf matches if any element matches,
//!   nested arrays included; this applies to `anything-but` as well, so
//!   `anything-but "a"` matches `["a", "b"]`.
//! - `exists` only looks at leaves, as in EventBridge: `exists: true` needs a
//!   string, number, boolean or `null` (or an array holding one), so an object
//!   or an empty array counts as absent.
//! - An object pattern against an event array matches if one element matches
//!   the whole sub-pattern, so fields are never combined across elements.
//! - `anything-but` never matches a missing field. Its literal form excludes
//!   values of any type (`anything-but "x"` matches `5`), while its
//!   prefix/suffix/wildcard/equals-ignore-case forms only match strings.
//! - `$or` needs at least two alternatives; each is ANDed with its siblings.
//! - Stricter than EventBridge where it would accept a pattern that can only
//!   be a mistake: empty match lists and empty nested objects are rejected.

use serde_json::{Map, Value};
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// Deepest object nesting a pattern may have; keeps compiling and matching
/// recursion bounded for untrusted patterns.
const MAX_PATTERN_DEPTH: usize = 64;

/// Deepest array nesting looked into inside an event. Deeper values are
/// treated as not matching, so a hostile event cannot exhaust the stack.
const MAX_EVENT_ARRAY_DEPTH: usize = 16;

/// A compiled EventBridge event pattern.
#[derive(Debug, Clone, PartialEq)]
pub struct Pattern {
    root: Node,
}

/// Why a pattern was rejected: what is wrong and where, as a JSON path such as
/// `pattern.detail.price`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatternError {
    path: String,
    message: String,
}

impl PatternError {
    fn new(path: &str, message: impl Into<String>) -> Self {
        Self {
            path: path.to_owned(),
            message: message.into(),
        }
    }
}

/// Shorthand for the many rejections in the compiler below.
fn fail<T>(path: &str, message: impl Into<String>) -> Result<T, PatternError> {
    Err(PatternError::new(path, message))
}

impl fmt::Display for PatternError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

impl std::error::Error for PatternError {}

/// One object level of a pattern: every field must match, and when `$or` is
/// present at least one alternative must match the same event object too.
#[derive(Debug, Clone, PartialEq)]
struct Node {
    fields: Vec<(String, Field)>,
    any_of: Vec<Node>,
}

#[derive(Debug, Clone, PartialEq)]
enum Field {
    Object(Node),
    /// A match list: the field matches if any matcher does.
    Leaf(Vec<Matcher>),
}

#[derive(Debug, Clone, PartialEq)]
enum Matcher {
    /// Kept apart from [`Test`] because it is about absence, which value
    /// tests can never see.
    Exists(bool),
    Value(Test),
}

/// A test of one leaf value of the event.
#[derive(Debug, Clone, PartialEq)]
enum Test {
    Str(String),
    Num(f64),
    Bool(bool),
    Null,
    Prefix(String),
    Suffix(String),
    /// The `*NoCase` variants hold the pattern text already lower-cased.
    PrefixNoCase(String),
    SuffixNoCase(String),
    EqualsNoCase(String),
    Wildcard(Wildcard),
    Cidr(Cidr),
    Numeric(Range),
    /// Literal exclusions: any leaf type can pass.
    AnythingBut(Vec<Test>),
    /// Prefix/suffix/wildcard/equals-ignore-case exclusions: only strings pass.
    AnythingButString(Vec<Test>),
}

impl Pattern {
    /// Compiles a pattern given as a JSON value.
    ///
    /// # Errors
    ///
    /// Returns a [`PatternError`] naming the offending path for anything
    /// EventBridge would reject, and for empty match lists and empty objects,
    /// which could only be mistakes.
    pub fn parse(pattern: &Value) -> Result<Pattern, PatternError> {
        compile_object(pattern, "pattern", 0).map(|root| Pattern { root })
    }

    /// Compiles a pattern given as JSON text.
    ///
    /// # Errors
    ///
    /// As [`Pattern::parse`]; invalid JSON is a [`PatternError`] too.
    pub fn from_json_str(s: &str) -> Result<Pattern, PatternError> {
        let value: Value = serde_json::from_str(s)
            .map_err(|e| PatternError::new("pattern", format!("invalid JSON: {e}")))?;
        Self::parse(&value)
    }

    /// Whether `event` matches this pattern. Never panics, whatever the event.
    #[must_use]
    pub fn matches(&self, event: &Value) -> bool {
        node_matches(&self.root, Some(event), MAX_EVENT_ARRAY_DEPTH)
    }

    /// If the pattern restricts the top-level field `field` (e.g. "source" or
    /// "detail-type") to a finite set of exact string values (plain string
    /// values in the array, no operators), return them; otherwise None. Used
    /// to derive broker subject filters.
    ///
    /// A top-level `$or` counts when every alternative restricts the field;
    /// the result is then the union of their values. The result is always a
    /// superset of the values a matching event can carry, so filtering on it
    /// never drops a matching event (for an array-valued event field, at
    /// least one element is in the set).
    #[must_use]
    pub fn exact_values(&self, field: &str) -> Option<Vec<String>> {
        exact_values_in(&self.root, field)
    }

    /// Whether the pattern tests nothing but `source` and `detail-type`,
    /// each against plain strings: then [`Pattern::exact_values`] of the
    /// two decides a match, and an event need not be decoded to route it.
    #[must_use]
    pub fn only_source_and_type(&self) -> bool {
        self.root.any_of.is_empty()
            && self.root.fields.iter().all(|(name, field)| {
                (name == "source" || name == "detail-type")
                    && matches!(field, Field::Leaf(matchers)
                        if matchers.iter().all(|m| matches!(m, Matcher::Value(Test::Str(_)))))
            })
    }
}

impl FromStr for Pattern {
    type Err = PatternError;

    /// Same as [`Pattern::from_json_str`].
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::from_json_str(s)
    }
}

fn exact_values_in(node: &Node, field: &str) -> Option<Vec<String>> {
    let own: Option<Vec<String>> = match node.fields.iter().find(|(name, _)| name == field) {
        Some((_, Field::Leaf(matchers))) => matchers
            .iter()
            .map(|m| match m {
                Matcher::Value(Test::Str(s)) => Some(s.clone()),
                _ => None,
            })
            .collect(),
        _ => None,
    };
    let values = match own {
        Some(values) => values,
        // Siblings AND with `$or`, so the alternatives can pin the field down
        // even where the field itself is unrestricted.
        None if !node.any_of.is_empty() => node
            .any_of
            .iter()
            .map(|alternative| exact_values_in(alternative, field))
            .collect::<Option<Vec<_>>>()?
            .concat(),
        None => return None,
    };
    let mut unique = Vec::with_capacity(values.len());
    for value in values {
        if !unique.contains(&value) {
            unique.push(value);
        }
    }
    Some(unique)
}

// ---------------------------------------------------------------- compiling

fn compile_object(value: &Value, path: &str, depth: usize) -> Result<Node, PatternError> {
    let Value::Object(map) = value else {
        return fail(path, "must be a JSON object");
    };
    if depth > MAX_PATTERN_DEPTH {
        return fail(path, "pattern is nested too deeply");
    }
    // EventBridge rejects empty patterns; an empty object would also match
    // every event, which is never what a rule author meant.
    if map.is_empty() {
        return fail(path, "pattern object must not be empty");
    }
    let mut node = Node {
        fields: Vec::with_capacity(map.len()),
        any_of: Vec::new(),
    };
    for (key, value) in map {
        let child = format!("{path}.{key}");
        if key == "$or" {
            node.any_of = compile_or(value, &child, depth)?;
            continue;
        }
        let field = match value {
            Value::Object(_) => Field::Object(compile_object(value, &child, depth + 1)?),
            Value::Array(items) => Field::Leaf(compile_leaf(items, &child)?),
            _ => return fail(&child, "leaf values must be arrays, e.g. [\"value\"]"),
        };
        node.fields.push((key.clone(), field));
    }
    Ok(node)
}

fn compile_or(value: &Value, path: &str, depth: usize) -> Result<Vec<Node>, PatternError> {
    // EventBridge only treats `$or` as the operator with two or more
    // alternatives; anything less would silently become a field name there.
    match value {
        Value::Array(alternatives) if alternatives.len() >= 2 => alternatives
            .iter()
            .enumerate()
            .map(|(i, alt)| compile_object(alt, &format!("{path}[{i}]"), depth + 1))
            .collect(),
        _ => fail(path, "$or needs an array of at least two pattern objects"),
    }
}

fn compile_leaf(items: &[Value], path: &str) -> Result<Vec<Matcher>, PatternError> {
    if items.is_empty() {
        return fail(path, "match list must not be empty");
    }
    items
        .iter()
        .map(|item| match item {
            Value::Object(op) => compile_operator(op, path),
            Value::Array(_) => fail(path, "match lists cannot contain nested arrays"),
            scalar => literal(scalar)
                .map(Matcher::Value)
                .ok_or_else(|| PatternError::new(path, "unsupported literal")),
        })
        .collect()
}

fn literal(value: &Value) -> Option<Test> {
    match value {
        Value::String(s) => Some(Test::Str(s.clone())),
        Value::Number(n) => n.as_f64().map(Test::Num),
        Value::Bool(b) => Some(Test::Bool(*b)),
        Value::Null => Some(Test::Null),
        Value::Array(_) | Value::Object(_) => None,
    }
}

fn compile_operator(op: &Map<String, Value>, path: &str) -> Result<Matcher, PatternError> {
    let mut entries = op.iter();
    let (Some((name, arg)), None) = (entries.next(), entries.next()) else {
        return fail(path, "an operator object must have exactly one key");
    };
    let test = match name.as_str() {
        "exists" => {
            return match arg {
                Value::Bool(b) => Ok(Matcher::Exists(*b)),
                _ => fail(path, "exists needs true or false"),
            }
        }
        "prefix" => affix(arg, path, "prefix", Test::Prefix, Test::PrefixNoCase)?,
        "suffix" => affix(arg, path, "suffix", Test::Suffix, Test::SuffixNoCase)?,
        "equals-ignore-case" => Test::EqualsNoCase(fold(string_arg(arg, path, name)?)),
        "wildcard" => Test::Wildcard(Wildcard::compile(string_arg(arg, path, name)?, path)?),
        "cidr" => Test::Cidr(Cidr::compile(string_arg(arg, path, name)?, path)?),
        "numeric" => Test::Numeric(Range::compile(arg, path)?),
        "anything-but" => compile_anything_but(arg, path)?,
        other => return fail(path, format!("unknown operator \"{other}\"")),
    };
    Ok(Matcher::Value(test))
}

fn string_arg<'a>(arg: &'a Value, path: &str, op: &str) -> Result<&'a str, PatternError> {
    arg.as_str()
        .ok_or_else(|| PatternError::new(path, format!("{op} needs a string")))
}

/// `prefix`/`suffix` take a string or `{"equals-ignore-case": string}`.
fn affix(
    arg: &Value,
    path: &str,
    op: &str,
    exact: fn(String) -> Test,
    no_case: fn(String) -> Test,
) -> Result<Test, PatternError> {
    match arg {
        Value::String(s) => return Ok(exact(s.clone())),
        Value::Object(inner) if inner.len() == 1 => {
            if let Some(Value::String(s)) = inner.get("equals-ignore-case") {
                return Ok(no_case(fold(s)));
            }
        }
        _ => {}
    }
    fail(
        path,
        format!("{op} needs a string or {{\"equals-ignore-case\": string}}"),
    )
}

fn compile_anything_but(arg: &Value, path: &str) -> Result<Test, PatternError> {
    const USAGE: &str = "anything-but needs a string, a number, a non-empty list of only strings \
                         or only numbers, or a prefix/suffix/equals-ignore-case/wildcard object";
    let (name, inner) = match arg {
        Value::String(_) | Value::Number(_) => {
            return Ok(Test::AnythingBut(literal(arg).into_iter().collect()))
        }
        // EventBridge documents lists of only strings or only numbers.
        Value::Array(items)
            if !items.is_empty()
                && (items.iter().all(Value::is_string) || items.iter().all(Value::is_number)) =>
        {
            return Ok(Test::AnythingBut(items.iter().filter_map(literal).collect()));
        }
        Value::Object(op) if op.len() == 1 => {
            op.iter().next().ok_or_else(|| PatternError::new(path, USAGE))?
        }
        _ => return fail(path, USAGE),
    };
    let strings = || string_list(inner).ok_or_else(|| PatternError::new(path, USAGE));
    let excluded = match name.as_str() {
        // A single prefix/suffix only, as documented by EventBridge.
        "prefix" | "suffix" => {
            let text = string_arg(inner, path, &format!("anything-but {name}"))?.to_owned();
            vec![if name == "prefix" {
                Test::Prefix(text)
            } else {
                Test::Suffix(text)
            }]
        }
        "equals-ignore-case" => strings()?
            .into_iter()
            .map(|s| Test::EqualsNoCase(fold(s)))
            .collect(),
        "wildcard" => strings()?
            .into_iter()
            .map(|s| Wildcard::compile(s, path).map(Test::Wildcard))
            .collect::<Result<_, _>>()?,
        other => return fail(path, format!("unknown anything-but operator \"{other}\"")),
    };
    Ok(Test::AnythingButString(excluded))
}

/// A string, or a non-empty array of strings.
fn string_list(value: &Value) -> Option<Vec<&str>> {
    match value {
        Value::String(s) => Some(vec![s.as_str()]),
        Value::Array(items) if !items.is_empty() => items.iter().map(Value::as_str).collect(),
        _ => None,
    }
}

/// Lower-cases per character, the same way [`folded`] does for event values,
/// so both sides of a comparison are folded identically.
fn fold(s: &str) -> String {
    folded(s).collect()
}

fn folded(s: &str) -> impl Iterator<Item = char> + '_ {
    s.chars().flat_map(char::to_lowercase)
}

/// `*` matches any run of characters; `\*` and `\\` escape, as in EventBridge.
#[derive(Debug, Clone, PartialEq)]
struct Wildcard {
    /// Literal text between the stars; a single part means there is no star.
    parts: Vec<String>,
}

impl Wildcard {
    fn compile(text: &str, path: &str) -> Result<Wildcard, PatternError> {
        let mut parts = Vec::new();
        let mut current = String::new();
        let mut after_star = false;
        let mut chars = text.chars();
        while let Some(c) = chars.next() {
            match c {
                // Rejected like EventBridge does: `**` means the same as `*`
                // and only invites needless backtracking.
                '*' if after_star => return fail(path, "wildcard cannot contain consecutive '*'"),
                '*' => {
                    parts.push(std::mem::take(&mut current));
                    after_star = true;
                    continue;
                }
                '\\' => match chars.next() {
                    Some(escaped @ ('*' | '\\')) => current.push(escaped),
                    _ => return fail(path, "wildcard may only escape '*' or '\\'"),
                },
                other => current.push(other),
            }
            after_star = false;
        }
        parts.push(current);
        Ok(Wildcard { parts })
    }

    fn matches(&self, s: &str) -> bool {
        let Some((first, rest)) = self.parts.split_first() else {
            return false;
        };
        let Some((last, middle)) = rest.split_last() else {
            return s == first;
        };
        let Some(s) = s.strip_prefix(first.as_str()) else {
            return false;
        };
        let Some(mut s) = s.strip_suffix(last.as_str()) else {
            return false;
        };
        // Taking the leftmost occurrence of each middle part is optimal: it
        // leaves the most text for the parts after it, so no backtracking.
        for part in middle {
            match s.find(part.as_str()) {
                Some(at) => s = &s[at + part.len()..],
                None => return false,
            }
        }
        true
    }
}

/// An IP network from a `cidr` operator as (masked network, mask) integers.
#[derive(Debug, Clone, PartialEq)]
enum Cidr {
    V4(u32, u32),
    V6(u128, u128),
}

impl Cidr {
    fn compile(text: &str, path: &str) -> Result<Cidr, PatternError> {
        let usage = format!("cidr needs an IP network like \"10.0.0.0/24\", got \"{text}\"");
        let bad = || PatternError::new(path, usage.as_str());
        let (addr, len) = text.split_once('/').ok_or_else(bad)?;
        let len: u32 = len.parse().map_err(|_| bad())?;
        // checked_shl yields None for a /0 network, whose mask is 0.
        match addr.parse::<IpAddr>().map_err(|_| bad())? {
            IpAddr::V4(a) if len <= 32 => {
                let mask = u32::MAX.checked_shl(32 - len).unwrap_or(0);
                Ok(Cidr::V4(u32::from(a) & mask, mask))
            }
            IpAddr::V6(a) if len <= 128 => {
                let mask = u128::MAX.checked_shl(128 - len).unwrap_or(0);
                Ok(Cidr::V6(u128::from(a) & mask, mask))
            }
            _ => Err(bad()),
        }
    }

    fn contains(&self, text: &str) -> bool {
        match (self, text.parse::<IpAddr>()) {
            (Cidr::V4(net, mask), Ok(IpAddr::V4(a))) => u32::from(a) & mask == *net,
            (Cidr::V6(net, mask), Ok(IpAddr::V6(a))) => u128::from(a) & mask == *net,
            _ => false,
        }
    }
}

/// A `numeric` range as optional `(bound, inclusive)` ends; `=` sets both.
#[derive(Debug, Clone, PartialEq)]
struct Range {
    lower: Option<(f64, bool)>,
    upper: Option<(f64, bool)>,
}

impl Range {
    fn compile(arg: &Value, path: &str) -> Result<Range, PatternError> {
        let usage = "numeric needs an array of operator/number pairs, e.g. [\">\", 0, \"<=\", 5]";
        let items = match arg {
            Value::Array(items) if items.len() == 2 || items.len() == 4 => items,
            _ => return fail(path, usage),
        };
        let mut range = Range {
            lower: None,
            upper: None,
        };
        for pair in items.chunks(2) {
            let [Value::String(op), Value::Number(n)] = pair else {
                return fail(path, usage);
            };
            let value = n.as_f64().ok_or_else(|| PatternError::new(path, usage))?;
            let (end, inclusive) = match op.as_str() {
                "=" if items.len() == 2 => {
                    (range.lower, range.upper) = (Some((value, true)), Some((value, true)));
                    continue;
                }
                "=" => return fail(path, "numeric \"=\" cannot be part of a range"),
                ">" => (&mut range.lower, false),
                ">=" => (&mut range.lower, true),
                "<" => (&mut range.upper, false),
                "<=" => (&mut range.upper, true),
                other => return fail(path, format!("numeric has unknown operator \"{other}\"")),
            };
            if end.is_some() {
                return fail(path, "numeric range needs one lower and one upper bound");
            }
            *end = Some((value, inclusive));
        }
        Ok(range)
    }

    fn contains(&self, x: f64) -> bool {
        self.lower
            .is_none_or(|(low, inclusive)| x > low || (inclusive && x == low))
            && self
                .upper
                .is_none_or(|(high, inclusive)| x < high || (inclusive && x == high))
    }
}

// ----------------------------------------------------------------- matching

/// Matches an object-level pattern against whatever the event holds there.
/// `budget` is the remaining array depth the event may still be descended into.
fn node_matches(node: &Node, value: Option<&Value>, budget: usize) -> bool {
    match value {
        // An object pattern against an array: one element must match it all.
        Some(Value::Array(items)) if !items.is_empty() => {
            budget > 0
                && items
                    .iter()
                    .any(|item| node_matches(node, Some(item), budget - 1))
        }
        Some(Value::Object(map)) => object_matches(node, Some(map), budget),
        // Missing, scalar or empty array: the fields below are all absent,
        // which only `exists: false` accepts.
        _ => object_matches(node, None, budget),
    }
}

fn object_matches(node: &Node, map: Option<&Map<String, Value>>, budget: usize) -> bool {
    let fields_match = node.fields.iter().all(|(name, field)| {
        let value = map.and_then(|m| m.get(name));
        match field {
            Field::Object(inner) => node_matches(inner, value, budget),
            Field::Leaf(matchers) => matchers.iter().any(|m| m.matches(value, budget)),
        }
    });
    fields_match && (node.any_of.is_empty() || node.any_of.iter().any(|alt| object_matches(alt, map, budget)))
}

impl Matcher {
    fn matches(&self, value: Option<&Value>, budget: usize) -> bool {
        match self {
            Matcher::Exists(wanted) => value.is_some_and(|v| any_leaf(v, budget, &|_| true)) == *wanted,
            Matcher::Value(test) => value.is_some_and(|v| any_leaf(v, budget, &|leaf| test.test(leaf))),
        }
    }
}

/// Whether `value` is, or (through arrays) contains, a leaf passing `f`.
/// Objects are not leaves, matching EventBridge's leaf-only semantics.
fn any_leaf(value: &Value, budget: usize, f: &impl Fn(&Value) -> bool) -> bool {
    match value {
        Value::Array(items) => budget > 0 && items.iter().any(|item| any_leaf(item, budget - 1, f)),
        Value::Object(_) => false,
        leaf => f(leaf),
    }
}

impl Test {
    /// Tests one leaf (never an array or object). Types never cross-match:
    /// `"5"` is not `5`, and string operators reject non-strings.
    fn test(&self, leaf: &Value) -> bool {
        match (self, leaf) {
            (Test::Str(p), Value::String(s)) => p == s,
            (Test::Num(p), Value::Number(n)) => n.as_f64() == Some(*p),
            (Test::Bool(p), Value::Bool(b)) => p == b,
            (Test::Null, Value::Null) => true,
            (Test::Prefix(p), Value::String(s)) => s.starts_with(p.as_str()),
            (Test::Suffix(p), Value::String(s)) => s.ends_with(p.as_str()),
            (Test::EqualsNoCase(p), Value::String(s)) => folded(s).eq(p.chars()),
            (Test::PrefixNoCase(p), Value::String(s)) => {
                let mut event = folded(s);
                p.chars().all(|c| event.next() == Some(c))
            }
            (Test::SuffixNoCase(p), Value::String(s)) => {
                // Reversing each character's lower-case expansion too keeps
                // multi-character expansions in the right order.
                let mut event = s.chars().rev().flat_map(|c| c.to_lowercase().rev());
                p.chars().rev().all(|c| event.next() == Some(c))
            }
            (Test::Wildcard(w), Value::String(s)) => w.matches(s),
            (Test::Cidr(c), Value::String(s)) => c.contains(s),
            (Test::Numeric(r), Value::Number(n)) => n.as_f64().is_some_and(|x| r.contains(x)),
            (Test::AnythingBut(excluded), _) => !excluded.iter().any(|t| t.test(leaf)),
            (Test::AnythingButString(excluded), Value::String(_)) => !excluded.iter().any(|t| t.test(leaf)),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn exact(pattern: Value, field: &str) -> Option<Vec<String>> {
        match Pattern::parse(&pattern) {
            Ok(pattern) => pattern.exact_values(field),
            Err(e) => panic!("test pattern rejected: {e}"),
        }
    }

    #[test]
    fn exact_values_lists_plain_strings_of_a_top_level_field() {
        let pattern =
            json!({"source": ["ecommerce.orders", "ecommerce.warehouse"], "detail-type": ["OrderCreated"]});
        assert_eq!(
            exact(pattern.clone(), "source"),
            Some(vec!["ecommerce.orders".into(), "ecommerce.warehouse".into()])
        );
        assert_eq!(exact(pattern, "detail-type"), Some(vec!["OrderCreated".into()]));
    }

    #[test]
    fn only_source_and_type_is_true_only_for_plain_strings_of_those_two() {
        let only = |pattern: Value| Pattern::parse(&pattern).map(|p| p.only_source_and_type());
        assert_eq!(
            only(json!({"source": ["a"], "detail-type": ["B", "C"]})),
            Ok(true)
        );
        assert_eq!(only(json!({"detail-type": ["B"]})), Ok(true));
        assert_eq!(
            only(json!({"source": ["a"], "detail": {"status": ["NEW"]}})),
            Ok(false)
        );
        assert_eq!(only(json!({"source": [{"prefix": "a"}]})), Ok(false));
        assert_eq!(
            only(json!({"source": ["a"], "$or": [{"detail-type": ["B"]}, {"detail-type": ["C"]}]})),
            Ok(false)
        );
        assert_eq!(only(json!({"resources": ["r"]})), Ok(false));
    }

    #[test]
    fn exact_values_is_none_for_an_unrestricted_field() {
        assert_eq!(exact(json!({"source": ["a"]}), "detail-type"), None);
    }

    #[test]
    fn exact_values_is_none_when_any_operator_is_present() {
        assert_eq!(exact(json!({"source": ["a", {"prefix": "b"}]}), "source"), None);
        assert_eq!(exact(json!({"source": [{"anything-but": "a"}]}), "source"), None);
    }

    #[test]
    fn exact_values_is_none_for_non_string_literals() {
        assert_eq!(exact(json!({"source": ["a", 5]}), "source"), None);
        assert_eq!(exact(json!({"source": [null]}), "source"), None);
    }

    #[test]
    fn exact_values_ignores_nested_fields_of_the_same_name() {
        assert_eq!(exact(json!({"detail": {"source": ["a"]}}), "source"), None);
        assert_eq!(exact(json!({"source": {"name": ["a"]}}), "source"), None);
    }

    #[test]
    fn exact_values_removes_duplicates_and_keeps_order() {
        assert_eq!(
            exact(json!({"source": ["b", "a", "b"]}), "source"),
            Some(vec!["b".into(), "a".into()])
        );
    }

    #[test]
    fn exact_values_unions_or_alternatives_that_all_restrict_the_field() {
        let pattern = json!({"$or": [{"source": ["a"]}, {"source": ["b", "a"], "detail": {"x": [1]}}]});
        assert_eq!(exact(pattern, "source"), Some(vec!["a".into(), "b".into()]));
    }

    #[test]
    fn exact_values_is_none_when_one_or_alternative_leaves_the_field_open() {
        let pattern = json!({"$or": [{"source": ["a"]}, {"detail-type": ["X"]}]});
        assert_eq!(exact(pattern, "source"), None);
    }

    #[test]
    fn exact_values_prefers_the_sibling_field_over_or_alternatives() {
        let pattern = json!({"source": ["a"], "$or": [{"x": ["1"]}, {"y": ["2"]}]});
        assert_eq!(exact(pattern, "source"), Some(vec!["a".into()]));
    }
}
