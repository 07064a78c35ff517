//! The schema the gateway serves, checked two ways: against the committed
//! `schema.graphql` (so a change to the API shows in review), and against
//! the original system's contract plus SPEC's additions (`additions.graphql`):
//! same types, fields, arguments and nullability; directives and
//! descriptions ignored.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use async_graphql::parser::parse_schema;
use async_graphql::parser::types::{TypeKind, TypeSystemDefinition};
use std::collections::BTreeMap;
use std::path::PathBuf;

fn committed_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("schema.graphql")
}

#[test]
fn the_committed_schema_is_the_one_the_code_serves() {
    let generated = ecom_frontend_api::sdl();
    let path = committed_path();
    if std::env::var("ECOM_UPDATE_SCHEMA").is_ok_and(|v| v == "1") {
        std::fs::write(&path, &generated).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    if committed != generated {
        let first = committed
            .lines()
            .zip(generated.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| committed.lines().count().min(generated.lines().count()));
        let line = |text: &str| text.lines().nth(first).unwrap_or("<end of file>").to_owned();
        panic!(
            "crates/frontend-api/schema.graphql differs from the schema the code serves.\n\
             first difference at line {}:\n  committed: {}\n  generated: {}\n\
             If the change is intended, regenerate it with\n  \
             ECOM_UPDATE_SCHEMA=1 cargo test -p ecom-frontend-api --test schema\n\
             and commit the file.",
            first + 1,
            line(&committed),
            line(&generated),
        );
    }
}

/// Type name → (kind, member → type with nullability, argument lists).
type Shape = BTreeMap<String, (String, BTreeMap<String, String>)>;

/// The parts of an SDL document the contract fixes: object, input and
/// root types with their fields, each field's type (with `!` and `[]`) and
/// each argument's name and type. Built-in and introspection types,
/// directives and descriptions are left out.
fn shape(sdl: &str) -> Shape {
    let doc = parse_schema(sdl).unwrap_or_else(|e| panic!("not a schema: {e}\n{sdl}"));
    let mut out = Shape::new();
    for def in doc.definitions {
        match def {
            TypeSystemDefinition::Type(t) => {
                let t = t.node;
                let name = t.name.node.to_string();
                let (kind, members) = match t.kind {
                    TypeKind::Object(o) => {
                        let members = o
                            .fields
                            .into_iter()
                            .map(|f| {
                                let f = f.node;
                                let args: Vec<String> = f
                                    .arguments
                                    .iter()
                                    .map(|a| format!("{}: {}", a.node.name.node, a.node.ty.node))
                                    .collect();
                                (
                                    f.name.node.to_string(),
                                    format!("({}): {}", args.join(", "), f.ty.node),
                                )
                            })
                            .collect();
                        ("type", members)
                    }
                    TypeKind::InputObject(i) => {
                        let members = i
                            .fields
                            .into_iter()
                            .map(|f| (f.node.name.node.to_string(), f.node.ty.node.to_string()))
                            .collect();
                        ("input", members)
                    }
                    TypeKind::Scalar => continue,
                    other => panic!("unexpected kind of type {name}: {other:?}"),
                };
                out.insert(name, (kind.to_owned(), members));
            }
            TypeSystemDefinition::Schema(s) => {
                let s = s.node;
                let roots = [
                    ("query", s.query),
                    ("mutation", s.mutation),
                    ("subscription", s.subscription),
                ]
                .into_iter()
                .filter_map(|(op, ty)| ty.map(|t| (op.to_owned(), t.node.to_string())))
                .collect();
                out.insert("schema".to_owned(), ("schema".to_owned(), roots));
            }
            TypeSystemDefinition::Directive(_) => {}
        }
    }
    // A schema without a `schema { }` block uses the default root names.
    out.entry("schema".to_owned()).or_insert_with(|| {
        let roots = [("query", "Query"), ("mutation", "Mutation")]
            .into_iter()
            .map(|(a, b)| (a.to_owned(), b.to_owned()))
            .collect();
        ("schema".to_owned(), roots)
    });
    out
}

#[test]
fn the_schema_has_the_contracts_types_fields_arguments_and_nullability() {
    let mut contract = shape(include_str!("contract.graphql"));
    // SPEC's additions: new types, and new members of existing ones.
    // The `schema` block too: the subscription root is an addition.
    for (name, (kind, members)) in shape(include_str!("additions.graphql")) {
        let entry = contract.entry(name).or_insert_with(|| (kind, BTreeMap::new()));
        entry.1.extend(members);
    }
    let ours = shape(&ecom_frontend_api::sdl());
    let mut differences = Vec::new();
    for (name, (kind, members)) in &contract {
        match ours.get(name) {
            None => differences.push(format!("missing {kind} {name}")),
            Some((our_kind, _)) if our_kind != kind => {
                differences.push(format!("{name} is a {our_kind}, the contract says {kind}"))
            }
            Some((_, our_members)) => {
                for (member, ty) in members {
                    match our_members.get(member) {
                        None => differences.push(format!("missing {name}.{member}{ty}")),
                        Some(our) if our != ty => {
                            differences.push(format!("{name}.{member}: ours {our}, contract {ty}"))
                        }
                        Some(_) => {}
                    }
                }
                for member in our_members.keys().filter(|m| !members.contains_key(*m)) {
                    differences.push(format!("{name}.{member} is not in the contract"));
                }
            }
        }
    }
    for name in ours.keys().filter(|n| !contract.contains_key(*n)) {
        differences.push(format!("type {name} is not in the contract"));
    }
    assert!(
        differences.is_empty(),
        "the schema differs from the contract:\n  {}",
        differences.join("\n  ")
    );
}

#[test]
fn the_contract_check_notices_a_changed_nullability() {
    // Guards the check above against comparing nothing.
    let contract = shape(include_str!("contract.graphql"));
    let altered = shape(
        &include_str!("contract.graphql")
            .replace("getOrder(orderId: ID!): Order", "getOrder(orderId: ID): Order"),
    );
    assert_ne!(contract, altered);
    assert!(contract.len() > 20, "{} types", contract.len());
}
