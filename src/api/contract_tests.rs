//! The contract documents against the code. `docs/openapi.json` and
//! `docs/API.md` are what merchants build against; these tests fail when
//! either drifts from what the tower really serves and sends:
//!
//! - the router's endpoint table (method, path, bearer or not) and the
//!   OpenAPI operations, and API.md's endpoint table;
//! - `ErrorCode::ALL` and the `Error` schema's `code` enum, API.md's error
//!   table (status and meaning of every code), and the codes each
//!   operation's responses name under their own status;
//! - `EventKind::ALL`, the OpenAPI `webhooks` and API.md's event sections;
//! - every `EventData` payload (serialized samples of every variant) and
//!   its documented schema: fields, required fields and types, and the whole
//!   webhook body as the outbox stores it;
//! - the channel object (`ChannelView`), the payment reply and the status
//!   object, field by field;
//! - the real router's answers (status and body) against the documented
//!   responses of each operation.
//!
//! The documents are read at run time, so editing one needs no rebuild.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::http::Request;
use bitcoin::hashes::Hash;
use bitcoin::{BlockHash, OutPoint, Txid};
use serde_json::Value;
use tower::ServiceExt;

use super::{endpoints, metrics_router, router, ApiState};
use crate::channel::SpendKind;
use crate::engine::{BlockRef, Event, EventData, EventKind, SeenIn};
use crate::error::ErrorCode;
use crate::metrics::Metrics;
use crate::node::zmq::ZmqStats;
use crate::node::{RpcClient, RpcCredentials, RpcSettings};
use crate::service::channel_keys::ChannelKeyReply;
use crate::service::view::{ChannelView, FundingView};
use crate::service::{PaymentReply, ServiceStatus};
use crate::status::StatusReply;
use crate::store::{CustodyMode, IssuedKey, Store};

const OPENAPI_PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/openapi.json");
const API_MD_PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/API.md");

/// The keys of an OpenAPI path item that are operations.
const HTTP_METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

fn openapi() -> Value {
    let text = std::fs::read_to_string(OPENAPI_PATH).unwrap_or_else(|e| panic!("{OPENAPI_PATH}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{OPENAPI_PATH} is not JSON: {e}"))
}

fn api_md() -> String {
    std::fs::read_to_string(API_MD_PATH).unwrap_or_else(|e| panic!("{API_MD_PATH}: {e}"))
}

// ---- OpenAPI and JSON Schema helpers ----

/// Follows local `$ref`s (`#/components/...`) to the schema they name.
fn resolve<'a>(doc: &'a Value, mut schema: &'a Value) -> &'a Value {
    for _ in 0..16 {
        let Some(reference) = schema.get("$ref").and_then(Value::as_str) else {
            return schema;
        };
        let pointer = reference
            .strip_prefix('#')
            .unwrap_or_else(|| panic!("openapi.json: $ref {reference} is not local"));
        schema = doc
            .pointer(pointer)
            .unwrap_or_else(|| panic!("openapi.json: $ref {reference} names nothing"));
    }
    panic!("openapi.json: a $ref cycle")
}

/// A component schema by name.
fn component<'a>(doc: &'a Value, name: &str) -> &'a Value {
    doc.pointer(&format!("/components/schemas/{name}"))
        .unwrap_or_else(|| panic!("openapi.json has no components.schemas.{name}"))
}

/// The object shapes a schema allows: itself, or each `oneOf` alternative.
fn shapes<'a>(doc: &'a Value, schema: &'a Value) -> Vec<&'a Value> {
    let schema = resolve(doc, schema);
    match schema.get("oneOf").and_then(Value::as_array) {
        Some(alternatives) => alternatives.iter().flat_map(|a| shapes(doc, a)).collect(),
        None => vec![schema],
    }
}

fn property_names(schema: &Value) -> BTreeSet<String> {
    schema
        .get("properties")
        .and_then(Value::as_object)
        .map(|p| p.keys().cloned().collect())
        .unwrap_or_default()
}

fn required_names(schema: &Value) -> BTreeSet<String> {
    schema
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).map(str::to_string).collect())
        .unwrap_or_default()
}

fn keys(value: &Value) -> BTreeSet<String> {
    value
        .as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default()
}

fn json(value: &impl serde::Serialize) -> Value {
    serde_json::to_value(value).expect("serializes")
}

/// `left` and `right` as one sentence per side, for set mismatches.
fn difference<T: Ord + std::fmt::Debug>(
    left: &BTreeSet<T>,
    right: &BTreeSet<T>,
    names: (&str, &str),
) -> String {
    format!(
        "only in {}: {:?}; only in {}: {:?}",
        names.0,
        left.difference(right).collect::<Vec<_>>(),
        names.1,
        right.difference(left).collect::<Vec<_>>()
    )
}

fn type_matches(name: &str, value: &Value) -> bool {
    match name {
        "null" => value.is_null(),
        "boolean" => value.is_boolean(),
        "string" => value.is_string(),
        "integer" => value.is_i64() || value.is_u64(),
        "number" => value.is_number(),
        "array" => value.is_array(),
        "object" => value.is_object(),
        _ => false,
    }
}

/// Checks `value` against `schema`, collecting every mismatch. Covers the
/// part of JSON Schema the documents use: `$ref`, `oneOf`, `type`, `const`,
/// `enum`, `minimum`, `required`, `properties`, `additionalProperties`,
/// `items` (string formats and patterns are not checked).
fn check(doc: &Value, schema: &Value, value: &Value, at: &str, errors: &mut Vec<String>) {
    let schema = resolve(doc, schema);
    if let Some(alternatives) = schema.get("oneOf").and_then(Value::as_array) {
        let matching = alternatives
            .iter()
            .filter(|a| {
                let mut e = Vec::new();
                check(doc, a, value, at, &mut e);
                e.is_empty()
            })
            .count();
        if matching != 1 {
            errors.push(format!(
                "{at}: {value} matches {matching} of the oneOf alternatives, not one"
            ));
        }
    }
    if let Some(types) = schema.get("type") {
        let allowed: Vec<&str> = match types {
            Value::String(t) => vec![t.as_str()],
            Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        if !allowed.iter().any(|t| type_matches(t, value)) {
            errors.push(format!("{at}: {value} is not of type {types}"));
            return;
        }
    }
    if let Some(constant) = schema.get("const") {
        if constant != value {
            errors.push(format!("{at}: {value} is not the constant {constant}"));
        }
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array) {
        if !allowed.contains(value) {
            errors.push(format!("{at}: {value} is not one of the enum {allowed:?}"));
        }
    }
    if let (Some(minimum), Some(n)) = (schema.get("minimum").and_then(Value::as_f64), value.as_f64()) {
        if n < minimum {
            errors.push(format!("{at}: {value} is below the minimum {minimum}"));
        }
    }
    if let Some(object) = value.as_object() {
        for name in required_names(schema) {
            if !object.contains_key(&name) {
                errors.push(format!("{at}: the required field {name} is missing"));
            }
        }
        let properties = schema.get("properties").and_then(Value::as_object);
        for (name, field) in object {
            let here = format!("{at}.{name}");
            match properties.and_then(|p| p.get(name)) {
                Some(s) => check(doc, s, field, &here, errors),
                None => match schema.get("additionalProperties") {
                    Some(Value::Bool(false)) => errors.push(format!("{here}: not a documented field")),
                    Some(s @ Value::Object(_)) => check(doc, s, field, &here, errors),
                    _ => {}
                },
            }
        }
    }
    if let (Some(items), Some(array)) = (schema.get("items"), value.as_array()) {
        for (i, item) in array.iter().enumerate() {
            check(doc, items, item, &format!("{at}[{i}]"), errors);
        }
    }
}

#[track_caller]
fn assert_valid(doc: &Value, schema: &Value, value: &Value, what: &str) {
    let mut errors = Vec::new();
    check(doc, schema, value, what, &mut errors);
    assert!(
        errors.is_empty(),
        "{what} does not match docs/openapi.json:\n  {}\nvalue: {value:#}",
        errors.join("\n  ")
    );
}

/// Every operation of the document: (METHOD, path) and the operation.
fn operations(doc: &Value) -> BTreeMap<(String, String), &Value> {
    let mut found = BTreeMap::new();
    for (path, item) in doc["paths"].as_object().expect("openapi.json has paths") {
        for (method, operation) in item.as_object().expect("a path item is an object") {
            if HTTP_METHODS.contains(&method.as_str()) {
                found.insert((method.to_uppercase(), path.clone()), operation);
            }
        }
    }
    found
}

/// The webhook body schema of an event type.
fn webhook_body<'a>(doc: &'a Value, kind: &str) -> &'a Value {
    let hook = doc["webhooks"]
        .get(kind)
        .unwrap_or_else(|| panic!("openapi.json has no webhook {kind}"));
    let schema = hook
        .pointer("/post/requestBody/content/application~1json/schema")
        .unwrap_or_else(|| panic!("openapi.json: webhook {kind} has no application/json request body"));
    resolve(doc, schema)
}

// ---- Markdown helpers ----

fn is_heading(line: &str) -> bool {
    line.starts_with('#') && line.trim_start_matches('#').starts_with(' ')
}

/// The lines under the heading `heading` (that exact line) up to the next
/// heading, fenced code left out.
fn md_section<'a>(md: &'a str, heading: &str) -> Vec<&'a str> {
    let mut lines = md.lines();
    assert!(
        lines.any(|l| l.trim_end() == heading),
        "docs/API.md has no heading {heading:?}"
    );
    let mut section = Vec::new();
    let mut fenced = false;
    for line in lines {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        if is_heading(line) {
            break;
        }
        section.push(line);
    }
    section
}

/// The rows of the section's tables whose first cell is a code span:
/// (that name, the other cells).
fn md_rows(lines: &[&str]) -> Vec<(String, Vec<String>)> {
    lines
        .iter()
        .filter_map(|line| {
            let inner = line.trim().strip_prefix('|')?.strip_suffix('|')?;
            let cells: Vec<&str> = inner.split('|').map(str::trim).collect();
            let name = cells.first()?.strip_prefix('`')?.strip_suffix('`')?;
            Some((
                name.to_string(),
                cells[1..].iter().map(|c| c.to_string()).collect(),
            ))
        })
        .collect()
}

/// The field names an API.md section's tables list.
fn md_fields(md: &str, heading: &str) -> BTreeSet<String> {
    md_rows(&md_section(md, heading))
        .into_iter()
        .map(|(name, _)| name)
        .collect()
}

// ---- Samples of what the tower sends ----

fn txid(byte: u8) -> Txid {
    Txid::from_byte_array([byte; 32])
}

fn block_hash(byte: u8) -> BlockHash {
    BlockHash::from_byte_array([byte; 32])
}

fn outpoint() -> OutPoint {
    OutPoint {
        txid: txid(1),
        vout: 1,
    }
}

/// Which `EventData` variant a payload is. Exhaustive on purpose: a new
/// variant does not compile until it is named here, in [`VARIANTS`], and
/// has a sample in [`event_samples`].
fn variant(data: &EventData) -> &'static str {
    match data {
        EventData::ChannelRegistered { .. } => "ChannelRegistered",
        EventData::ChannelPayment { .. } => "ChannelPayment",
        EventData::FundingSeen { .. } => "FundingSeen",
        EventData::FundingConfirmed { .. } => "FundingConfirmed",
        EventData::FundingDoubleSpent { .. } => "FundingDoubleSpent",
        EventData::FundingSpentByOther { .. } => "FundingSpentByOther",
        EventData::DeadlineNear { .. } => "DeadlineNear",
        EventData::CloseBroadcast { .. } => "CloseBroadcast",
        EventData::CloseRejected { .. } => "CloseRejected",
        EventData::CloseConfirmed { .. } => "CloseConfirmed",
        EventData::ChannelRefunded { .. } => "ChannelRefunded",
        EventData::ChainReorg { .. } => "ChainReorg",
        EventData::ChannelReorg { .. } => "ChannelReorg",
        EventData::NodeDown { .. } => "NodeDown",
        EventData::NodeUp { .. } => "NodeUp",
    }
}

const VARIANTS: [&str; 15] = [
    "ChannelRegistered",
    "ChannelPayment",
    "FundingSeen",
    "FundingConfirmed",
    "FundingDoubleSpent",
    "FundingSpentByOther",
    "DeadlineNear",
    "CloseBroadcast",
    "CloseRejected",
    "CloseConfirmed",
    "ChannelRefunded",
    "ChainReorg",
    "ChannelReorg",
    "NodeDown",
    "NodeUp",
];

/// The channel an event of this payload is about, as the engine emits it:
/// none for the tower-wide ones.
fn channel_of(data: &EventData) -> Option<&'static str> {
    match data {
        EventData::ChainReorg { .. } | EventData::NodeDown { .. } | EventData::NodeUp { .. } => None,
        _ => Some("2N7hg22XSg3RaU3pSZcMh1GqsoRuhtZvHVN"),
    }
}

/// A payload of every variant, with each optional field both present and
/// absent, so the fields always sent and the fields ever sent are known.
fn event_samples() -> Vec<EventData> {
    vec![
        EventData::ChannelRegistered {
            capacity: 1_000_000_000,
            locktime: 200,
            locktime_kind: "height",
            deadline_height: 190,
        },
        EventData::ChannelPayment {
            sequence: 1,
            merchant_amount: 150_000_000,
        },
        EventData::FundingSeen {
            outpoint: outpoint(),
            value: 1_000_000_000,
            seen_in: SeenIn::Mempool,
            block_hash: None,
        },
        EventData::FundingSeen {
            outpoint: outpoint(),
            value: 1_000_000_000,
            seen_in: SeenIn::Block,
            block_hash: Some(block_hash(2)),
        },
        EventData::FundingSeen {
            outpoint: outpoint(),
            value: 1_000_000_000,
            seen_in: SeenIn::Confirmed,
            block_hash: None,
        },
        EventData::FundingConfirmed {
            outpoint: outpoint(),
            value: 1_000_000_000,
            height: 102,
            confirmations: 6,
        },
        EventData::FundingDoubleSpent {
            outpoint: outpoint(),
            funding_txid: txid(1),
            conflicting_txid: txid(3),
            seen_in: SeenIn::Mempool,
        },
        EventData::FundingSpentByOther {
            outpoint: outpoint(),
            spending_txid: txid(4),
            branch: SpendKind::Refund,
            seen_in: SeenIn::Block,
        },
        EventData::DeadlineNear {
            broadcast_height: 190,
            blocks_left: 40,
            has_payment: true,
            merchant_amount: 150_000_000,
        },
        EventData::CloseBroadcast {
            close_txid: txid(5),
            height: 190,
            sequence: 7,
            merchant_amount: 150_000_000,
        },
        EventData::CloseRejected {
            reason: "script_invalid",
            message: "mandatory-script-verify-flag-failed".into(),
            sequence: 7,
        },
        EventData::CloseConfirmed {
            close_txid: Some(txid(5)),
            height: 191,
            confirmations: 6,
            merchant_amount: 150_000_000,
        },
        EventData::CloseConfirmed {
            close_txid: None,
            height: 191,
            confirmations: 6,
            merchant_amount: 150_000_000,
        },
        EventData::ChannelRefunded {
            refund_txid: txid(6),
            height: 201,
        },
        EventData::ChainReorg {
            depth: 1,
            disconnected: vec![BlockRef {
                height: 120,
                hash: block_hash(7),
            }],
            fork_height: 119,
        },
        EventData::ChannelReorg {
            height: 120,
            undone: vec!["funding", "close"],
        },
        EventData::NodeDown {
            processed_height: Some(120),
        },
        EventData::NodeUp {
            processed_height: None,
        },
    ]
}

fn channel_sample(state: &'static str, close_txid: Option<Txid>) -> ChannelView {
    ChannelView {
        id: "2N7hg22XSg3RaU3pSZcMh1GqsoRuhtZvHVN".into(),
        state,
        redeem_script: "6302c800b17521032fa8d745f6922d02d071e81067611cdb8998517b28053b2ced".into(),
        template: "canonical",
        locktime: 200,
        locktime_kind: "height",
        deadline_height: 190,
        payer_pubkey: "032fa8d745f6922d02d071e81067611cdb8998517b28053b2cedbeac3598321127".into(),
        merchant_pubkey: "038d9124fb78cf71d5425f4a743797c4117cfff668d0791cbd8893383a7842db66".into(),
        funding: vec![FundingView {
            outpoint: outpoint().to_string(),
            value: 1_000_000_000,
            confirmations: 1,
            status: "confirmed",
        }],
        capacity: 1_000_000_000,
        merchant_amount: 150_000_000,
        sequence: 1,
        close_txid: close_txid.map(|t| t.to_string()),
        close_confirmations: 0,
        created_at: "2026-11-22T07:18:26Z".into(),
        updated_at: "2026-11-22T07:18:26Z".into(),
    }
}

fn status_sample() -> StatusReply {
    let service = ServiceStatus {
        network: "regtest".into(),
        node_reachable: true,
        node_height: Some(101),
        node_tip: Some(block_hash(9).to_string()),
        processed_height: Some(101),
        caught_up: true,
        zmq_configured: true,
        zmq_seconds_since_last_message: Some(0),
        channels_by_state: crate::engine::ChannelState::ALL
            .iter()
            .map(|s| (s.as_str(), 1))
            .collect(),
        nearest_deadline_height: Some(190),
        nearest_deadline_channel: Some("2N7hg22XSg3RaU3pSZcMh1GqsoRuhtZvHVN".into()),
        store_writable: true,
        store_error: None,
    };
    StatusReply {
        service,
        group: crate::ha::GroupStatus {
            role: crate::ha::Role::Standby,
            tower_id: "tower-b".into(),
            leader: Some("http://tower-a:8335".into()),
            lease_expires_at: Some("2026-12-02T03:00:10Z".into()),
        },
        tower_pubkey: "02f9308a019258c31049344f85f89d5229b531c845836f99b08601f113bce036f9".into(),
    }
}

// ---- The tests ----

#[test]
fn openapi_and_api_md_list_exactly_the_routers_endpoints() {
    let doc = openapi();
    let mut served: BTreeMap<(String, String), bool> = endpoints()
        .iter()
        .map(|e| ((e.method.to_string(), e.path.to_string()), e.authenticated))
        .collect();
    // `/metrics` comes from `metrics_router` (metrics.listen), without a token.
    served.insert(("GET".into(), "/metrics".into()), false);

    let documented = operations(&doc);
    let served_keys: BTreeSet<_> = served.keys().cloned().collect();
    let documented_keys: BTreeSet<_> = documented.keys().cloned().collect();
    assert_eq!(
        served_keys,
        documented_keys,
        "the router and docs/openapi.json differ: {}",
        difference(&served_keys, &documented_keys, ("the router", "openapi.json"))
    );

    let scheme = doc
        .pointer("/components/securitySchemes/bearerAuth")
        .expect("openapi.json has the bearerAuth security scheme");
    assert_eq!(
        (scheme["type"].as_str(), scheme["scheme"].as_str()),
        (Some("http"), Some("bearer"))
    );
    for endpoint in endpoints() {
        let operation = documented[&(endpoint.method.to_string(), endpoint.path.to_string())];
        let status = endpoint.success_status.to_string();
        assert!(
            operation["responses"].get(&status).is_some(),
            "{} {}: its success status {status} is not among openapi.json's responses",
            endpoint.method,
            endpoint.path
        );
    }
    for ((method, path), authenticated) in &served {
        let operation = documented[&(method.clone(), path.clone())];
        let security = operation.get("security").or(doc.get("security"));
        let bearer = security
            .and_then(Value::as_array)
            .is_some_and(|requirements| requirements.iter().any(|r| r.get("bearerAuth").is_some()));
        assert_eq!(
            bearer, *authenticated,
            "{method} {path}: the router's authenticated flag is {authenticated}, openapi.json's security says {bearer}"
        );
        let operation_id = operation["operationId"].as_str();
        assert!(operation_id.is_some(), "{method} {path} has no operationId");
    }
    assert!(
        doc.pointer("/paths/~1metrics/get/responses/200/content/text~1plain")
            .is_some(),
        "openapi.json: /metrics answers text/plain"
    );

    // API.md's endpoint table: method, path and auth of each.
    let md = api_md();
    let table: BTreeMap<(String, String), bool> = md_rows(&md_section(&md, "## Endpoints"))
        .into_iter()
        .map(|(method, cells)| {
            let path = cells[0].trim_matches('`').to_string();
            ((method, path), cells[1] == "bearer")
        })
        .collect();
    let table_keys: BTreeSet<_> = table.keys().cloned().collect();
    assert_eq!(
        served_keys,
        table_keys,
        "the router and docs/API.md's endpoint table differ: {}",
        difference(&served_keys, &table_keys, ("the router", "API.md"))
    );
    for (endpoint, authenticated) in &served {
        assert_eq!(
            table[endpoint], *authenticated,
            "docs/API.md's endpoint table: {endpoint:?} auth"
        );
    }
}

#[test]
fn every_error_code_is_documented_with_its_status_and_meaning() {
    let doc = openapi();
    let codes: BTreeSet<String> = ErrorCode::ALL.iter().map(|c| c.as_str().to_string()).collect();
    let code_schema = doc
        .pointer("/components/schemas/Error/properties/error/properties/code")
        .map(|s| resolve(&doc, s))
        .expect("openapi.json: Error.error.code");
    let enumerated: BTreeSet<String> = code_schema["enum"]
        .as_array()
        .expect("Error.error.code has an enum")
        .iter()
        .map(|c| c.as_str().expect("codes are strings").to_string())
        .collect();
    assert_eq!(
        codes,
        enumerated,
        "ErrorCode::ALL and openapi.json's Error code enum differ: {}",
        difference(&codes, &enumerated, ("ErrorCode", "openapi.json"))
    );

    let md = api_md();
    let table: BTreeMap<String, Vec<String>> =
        md_rows(&md_section(&md, "## Error codes")).into_iter().collect();
    for code in ErrorCode::ALL {
        let row = table
            .get(code.as_str())
            .unwrap_or_else(|| panic!("docs/API.md's error table lacks {code}"));
        assert_eq!(
            row[0],
            code.http_status().to_string(),
            "docs/API.md gives {code} the status {}; the API answers it with {}",
            row[0],
            code.http_status()
        );
        assert_eq!(row[1], code.meaning(), "docs/API.md: the meaning of {code}");
    }
    for name in table.keys() {
        assert!(
            ErrorCode::parse(name).is_some(),
            "docs/API.md's error table lists {name}, which is no ErrorCode"
        );
    }

    // The codes each operation's responses name are answered with that status.
    for ((method, path), operation) in operations(&doc) {
        let responses = operation["responses"].as_object().expect("responses");
        for (status, response) in responses {
            let response = resolve(&doc, response);
            let Some(named) = response.get("x-error-codes").and_then(Value::as_array) else {
                continue;
            };
            let schema = response.pointer("/content/application~1json/schema");
            assert!(
                schema.is_some_and(|s| std::ptr::eq(resolve(&doc, s), component(&doc, "Error"))),
                "{method} {path} {status}: an error response's body is the Error schema"
            );
            for name in named {
                let name = name.as_str().expect("a code is a string");
                let code = ErrorCode::parse(name)
                    .unwrap_or_else(|| panic!("{method} {path} names {name}, no ErrorCode"));
                assert_eq!(
                    *status,
                    code.http_status().to_string(),
                    "{method} {path}: openapi.json lists {code} under {status}; it is answered with {}",
                    code.http_status()
                );
            }
        }
    }
}

#[test]
fn every_event_type_is_documented() {
    let doc = openapi();
    let kinds: BTreeSet<String> = EventKind::ALL.iter().map(|k| k.as_str().to_string()).collect();
    let hooks: BTreeSet<String> = doc["webhooks"]
        .as_object()
        .expect("openapi.json has webhooks")
        .keys()
        .cloned()
        .collect();
    assert_eq!(
        kinds,
        hooks,
        "EventKind::ALL and openapi.json's webhooks differ: {}",
        difference(&kinds, &hooks, ("EventKind", "openapi.json"))
    );

    let md = api_md();
    let headings: BTreeSet<String> = md
        .lines()
        .filter_map(|l| l.strip_prefix("#### `")?.strip_suffix('`'))
        .map(str::to_string)
        .collect();
    assert_eq!(
        kinds,
        headings,
        "EventKind::ALL and docs/API.md's event sections differ: {}",
        difference(&kinds, &headings, ("EventKind", "API.md"))
    );
    // A webhook's `events` filter is checked against EventKind itself
    // (config::validate), so there is no second list to drift.
}

#[test]
fn every_webhook_payload_matches_its_documented_schema() {
    let doc = openapi();
    let md = api_md();
    let samples = event_samples();
    let sampled: BTreeSet<&str> = samples.iter().map(variant).collect();
    assert_eq!(
        sampled,
        BTreeSet::from(VARIANTS),
        "every EventData variant needs a sample"
    );

    for kind in EventKind::ALL {
        let name = kind.as_str();
        let envelope = webhook_body(&doc, name);
        let data_schema = &envelope["properties"]["data"];
        let data_shapes = shapes(&doc, data_schema);
        let payloads: Vec<Value> = samples.iter().filter(|d| d.kind() == kind).map(json).collect();
        assert!(!payloads.is_empty(), "no sample payload of {name}");

        // Each payload fits exactly one documented shape; per shape, the
        // fields ever sent are its properties and those always sent its
        // required ones.
        let mut fitted: Vec<Vec<BTreeSet<String>>> = vec![Vec::new(); data_shapes.len()];
        for payload in &payloads {
            let fields = keys(payload);
            let fits: Vec<usize> = data_shapes
                .iter()
                .enumerate()
                .filter(|(_, s)| required_names(s).is_subset(&fields) && fields.is_subset(&property_names(s)))
                .map(|(i, _)| i)
                .collect();
            let documented: Vec<_> = data_shapes
                .iter()
                .map(|s| (property_names(s), required_names(s)))
                .collect();
            assert_eq!(
                fits.len(),
                1,
                "{name}: the payload {payload} (fields {fields:?}) fits {} of the documented shapes \
                 (properties, required): {documented:?}",
                fits.len()
            );
            fitted[fits[0]].push(fields);
            assert_valid(&doc, data_schema, payload, &format!("the data of {name}"));
        }
        for (shape, sent) in data_shapes.iter().zip(&fitted) {
            let properties = property_names(shape);
            assert!(
                !sent.is_empty(),
                "{name}: no payload has the documented shape {properties:?}"
            );
            let ever: BTreeSet<String> = sent.iter().flatten().cloned().collect();
            let always = sent.iter().skip(1).fold(sent[0].clone(), |acc, s| &acc & s);
            assert_eq!(
                ever,
                properties,
                "{name}: the fields sent and the documented properties differ: {}",
                difference(&ever, &properties, ("the payload", "openapi.json"))
            );
            let required = required_names(shape);
            assert_eq!(
                always,
                required,
                "{name}: the fields always sent and the documented required ones differ: {}",
                difference(&always, &required, ("the payload", "openapi.json"))
            );
        }

        let sent: BTreeSet<String> = payloads.iter().flat_map(keys).collect();
        let listed = md_fields(&md, &format!("#### `{name}`"));
        assert_eq!(
            sent,
            listed,
            "{name}: the payload's fields and docs/API.md's table differ: {}",
            difference(&sent, &listed, ("the payload", "API.md"))
        );
    }

    // The whole body, as the outbox stores and the notifier POSTs it.
    let mut store = Store::open_in_memory().unwrap();
    for (i, data) in samples.iter().enumerate() {
        let event = Event::new(channel_of(data), &format!("sample {i}"), data.clone());
        assert!(store.write(|tx| tx.enqueue_event(&event, None)).unwrap());
    }
    let stored = store
        .outbox_pending("http://receiver.invalid/hook", 1000)
        .unwrap();
    assert_eq!(stored.len(), samples.len());
    for row in stored {
        let body: Value = serde_json::from_str(&row.payload).unwrap();
        let envelope = webhook_body(&doc, &row.kind);
        let (sent, documented) = (keys(&body), property_names(envelope));
        assert_eq!(
            sent,
            documented,
            "the {} webhook body's fields differ: {}",
            row.kind,
            difference(&sent, &documented, ("the body", "openapi.json"))
        );
        assert_valid(&doc, envelope, &body, &format!("the {} webhook body", row.kind));
        assert_eq!(body["id"], row.event_id.as_str());
    }
}

#[test]
fn the_channel_object_and_payment_reply_match_their_schemas() {
    let doc = openapi();
    let md = api_md();
    let channel_schema = component(&doc, "Channel");
    let funding_schema = component(&doc, "Funding");
    for view in [
        channel_sample("open", None),
        channel_sample("closing", Some(txid(5))),
    ] {
        let value = json(&view);
        let (fields, properties) = (keys(&value), property_names(channel_schema));
        assert_eq!(
            fields,
            properties,
            "the channel object and openapi.json's Channel differ: {}",
            difference(&fields, &properties, ("ChannelView", "openapi.json"))
        );
        assert_eq!(
            fields,
            required_names(channel_schema),
            "every channel field is always sent"
        );
        let funding = keys(&value["funding"][0]);
        assert_eq!(
            funding,
            property_names(funding_schema),
            "a funding entry vs Funding"
        );
        assert_eq!(
            funding,
            required_names(funding_schema),
            "a funding entry vs Funding"
        );
        assert_valid(&doc, channel_schema, &value, "the channel object");

        let listed = md_fields(&md, "## The channel object");
        assert_eq!(
            fields,
            listed,
            "the channel object and docs/API.md differ: {}",
            difference(&fields, &listed, ("ChannelView", "API.md"))
        );
        let listed = md_fields(&md, "### Funding entries");
        assert_eq!(funding, listed, "a funding entry and docs/API.md differ");
    }

    let receipt = receipt_sample();
    let reply = super::attach_receipt(
        &PaymentReply {
            channel: channel_sample("open", None),
            sequence: 1,
            merchant_amount: 150_000_000,
            acceptance: None,
        },
        &receipt,
    )
    .unwrap();
    let schema = component(&doc, "PaymentReply");
    assert_eq!(keys(&reply), property_names(schema), "PaymentReply");
    assert_eq!(keys(&reply), required_names(schema), "PaymentReply");
    assert_valid(&doc, schema, &reply, "the payment reply");
    assert_valid(&doc, component(&doc, "Receipt"), &reply["receipt"], "the receipt");

    let registered = super::attach_receipt(&channel_sample("open", None), &receipt).unwrap();
    let schema = component(&doc, "RegisteredChannel");
    assert_eq!(keys(&registered), property_names(schema), "RegisteredChannel");
    assert_eq!(keys(&registered), required_names(schema), "RegisteredChannel");
    assert_valid(&doc, schema, &registered, "the registration answer");
}

/// A receipt signed by a fresh identity key.
fn receipt_sample() -> crate::receipt::Receipt {
    let dir = tempfile::tempdir().unwrap();
    let identity = crate::identity::TowerIdentity::load_or_create(&dir.path().join("id.key")).unwrap();
    let facts = crate::receipt::ReceiptFacts {
        network: "regtest".into(),
        channel: "2N8hwP1WmJrFF5QWABn38y63uYLhnJYJYTF".into(),
        kind: crate::receipt::ReceiptKind::Payment,
        sequence: 1,
        merchant_amount: 150_000_000,
        close_txid: Some(txid(5)),
        psbt_sha256: crate::receipt::psbt_sha256(b"psbt"),
        accepted_at: 1_796_205_600,
    };
    crate::receipt::Receipt::issue(&identity, &facts)
}

#[test]
fn the_status_object_matches_its_schema() {
    let doc = openapi();
    let schema = component(&doc, "Status");
    let value = json(&status_sample());
    let (fields, properties) = (keys(&value), property_names(schema));
    assert_eq!(
        fields,
        properties,
        "the status object and openapi.json's Status differ: {}",
        difference(&fields, &properties, ("StatusReply", "openapi.json"))
    );
    assert_eq!(
        fields,
        required_names(schema),
        "every status field is always sent"
    );
    assert_valid(&doc, schema, &value, "the status object");
    let states: BTreeSet<String> = keys(&value["channels_by_state"]);
    assert_eq!(
        states,
        property_names(resolve(&doc, &schema["properties"]["channels_by_state"])),
        "channels_by_state names every state"
    );
    let listed = md_fields(&api_md(), "## The status object");
    assert_eq!(
        fields,
        listed,
        "the status object and docs/API.md differ: {}",
        difference(&fields, &listed, ("StatusReply", "API.md"))
    );
}

#[test]
fn the_channel_key_reply_matches_its_schema() {
    let doc = openapi();
    let schema = component(&doc, "ChannelKey");
    let xpub = bitcoin::bip32::Xpub::from_priv(
        &bitcoin::secp256k1::Secp256k1::new(),
        &bitcoin::bip32::Xpriv::new_master(bitcoin::NetworkKind::Test, &[4; 32]).unwrap(),
    );
    let (pubkey, origin) = crate::channel::custody::channel_key(&xpub, 12).unwrap();
    let value = json(&ChannelKeyReply::from(&IssuedKey {
        merchant_id: 1,
        index: 12,
        pubkey,
        origin,
        issued_at: 1_700_000_000,
        expires_at: 1_700_086_400,
        channel: None,
        used_at: None,
    }));
    let (fields, properties) = (keys(&value), property_names(schema));
    assert_eq!(
        fields,
        properties,
        "the channel key and openapi.json's ChannelKey differ: {}",
        difference(&fields, &properties, ("ChannelKeyReply", "openapi.json"))
    );
    assert_eq!(
        fields,
        required_names(schema),
        "every channel key field is always sent"
    );
    let origin_schema = &schema["properties"]["origin"];
    assert_eq!(keys(&value["origin"]), property_names(origin_schema), "origin");
    assert_eq!(keys(&value["origin"]), required_names(origin_schema), "origin");
    assert_valid(&doc, schema, &value, "the channel key");
    assert_eq!(value["origin"]["path"], "m/0/12");
    assert_eq!(value["expires_at"], "2023-11-15T22:13:20Z");
    let listed = md_fields(
        &api_md(),
        "### `POST /v1/channel-keys`: a fresh merchant key for a new channel",
    );
    assert_eq!(
        fields,
        listed,
        "the channel key and docs/API.md differ: {}",
        difference(&fields, &listed, ("ChannelKeyReply", "API.md"))
    );
}

/// One request to the real router and what it must answer.
struct Case {
    method: &'static str,
    uri: &'static str,
    token: bool,
    body: Option<&'static str>,
    /// A Content-Length to announce instead of the body's own.
    announced_length: Option<usize>,
    status: u16,
    code: Option<ErrorCode>,
}

fn case(method: &'static str, uri: &'static str, token: bool, status: u16, code: Option<ErrorCode>) -> Case {
    Case {
        method,
        uri,
        token,
        body: None,
        announced_length: None,
        status,
        code,
    }
}

/// The documented path (`/v1/channels/{id}`) a request's path falls under.
fn template_of(doc: &Value, uri: &str) -> Option<String> {
    let path = uri.split('?').next().unwrap_or(uri);
    let segments: Vec<&str> = path.split('/').collect();
    doc["paths"].as_object()?.keys().find_map(|template| {
        let parts: Vec<&str> = template.split('/').collect();
        let fits = parts.len() == segments.len()
            && parts
                .iter()
                .zip(&segments)
                .all(|(t, s)| t == s || (t.starts_with('{') && t.ends_with('}') && !s.is_empty()));
        fits.then(|| template.clone())
    })
}

fn cases() -> Vec<Case> {
    use ErrorCode::*;
    let mut cases = vec![
        case("GET", "/healthz", false, 200, None),
        // Not ready: the node has not been reached.
        case("GET", "/readyz", false, 503, None),
        case("GET", "/v1/status", false, 401, Some(Unauthorized)),
        case("GET", "/v1/status", true, 200, None),
        case(
            "GET",
            "/v1/channels?state=sleeping",
            true,
            400,
            Some(InvalidRequest),
        ),
        case("GET", "/v1/channels?limit=many", true, 400, Some(InvalidRequest)),
        // No writer runs in this test: commands answer `unavailable`.
        case("GET", "/v1/channels?limit=5", true, 503, Some(Unavailable)),
        case("GET", "/v1/channels/2Nabc", true, 503, Some(Unavailable)),
        case("GET", "/v1/channels/2Nabc", false, 401, Some(Unauthorized)),
        Case {
            body: Some("a channel, please"),
            ..case("POST", "/v1/channels", true, 400, Some(InvalidJson))
        },
        Case {
            body: Some(r#"{"psbt": "cHNidP8=", "tip": 1}"#),
            ..case("POST", "/v1/channels", true, 400, Some(InvalidRequest))
        },
        Case {
            body: Some(r#"{"psbt": "not base64"}"#),
            ..case("POST", "/v1/channels", true, 400, Some(InvalidPsbt))
        },
        Case {
            body: Some("{}"),
            ..case(
                "POST",
                "/v1/channels/2Nabc/payments",
                true,
                400,
                Some(InvalidRequest),
            )
        },
        Case {
            body: Some("{}"),
            announced_length: Some(1 << 20),
            ..case(
                "POST",
                "/v1/channels/2Nabc/payments",
                true,
                413,
                Some(BodyTooLarge),
            )
        },
        case("POST", "/v1/channels/2Nabc/close", true, 503, Some(Unavailable)),
        // The merchant is presigned and has no xpub yet.
        case("POST", "/v1/channel-keys", true, 409, Some(NoExtendedKey)),
        case("POST", "/v1/channel-keys", false, 401, Some(Unauthorized)),
        // Merchants' webhooks (no private targets in this router).
        Case {
            body: Some(r#"{"url": "ftp://example.com/"}"#),
            ..case("POST", "/v1/webhooks", true, 422, Some(InvalidWebhookUrl))
        },
        Case {
            body: Some(r#"{"url": "http://10.0.0.1/"}"#),
            ..case("POST", "/v1/webhooks", true, 422, Some(WebhookTargetRefused))
        },
        Case {
            body: Some(r#"{"url": "https://93.184.215.14/", "events": ["channel.paid"]}"#),
            ..case("POST", "/v1/webhooks", true, 400, Some(InvalidRequest))
        },
        Case {
            body: Some(r#"{"url": "https://93.184.215.14/hook", "events": ["channel.payment"]}"#),
            ..case("POST", "/v1/webhooks", true, 201, None)
        },
    ];
    // Up to the limit of live endpoints, then refused.
    let hook = r#"{"url": "https://93.184.215.14/hook"}"#;
    for _ in 1..super::MAX_WEBHOOKS_PER_MERCHANT {
        cases.push(Case {
            body: Some(hook),
            ..case("POST", "/v1/webhooks", true, 201, None)
        });
    }
    cases.push(Case {
        body: Some(hook),
        ..case("POST", "/v1/webhooks", true, 409, Some(WebhookLimitReached))
    });
    cases.extend([
        case("GET", "/v1/webhooks", true, 200, None),
        case("GET", "/v1/webhooks", false, 401, Some(Unauthorized)),
        case("DELETE", "/v1/webhooks/wh_nope", true, 404, Some(WebhookNotFound)),
        case(
            "GET",
            "/v1/webhooks/wh_nope/deliveries",
            true,
            404,
            Some(WebhookNotFound),
        ),
        case(
            "POST",
            "/v1/webhooks/deliveries/dlv_nope/redeliver",
            true,
            404,
            Some(DeliveryNotFound),
        ),
        case("GET", "/v2/channels", true, 404, Some(NotFound)),
    ]);
    cases
}

#[tokio::test]
async fn the_router_answers_as_documented() {
    let doc = openapi();
    let mut store = Store::open_in_memory().unwrap();
    let token = store
        .write(|tx| {
            let merchant = tx.insert_merchant("shop", None, CustodyMode::Presigned, None)?;
            tx.create_token(merchant)
        })
        .unwrap()
        .token;
    let rpc = RpcClient::new(&RpcSettings {
        url: "http://127.0.0.1:9".into(),
        auth: RpcCredentials::UserPass {
            user: "u".into(),
            password: "p".into(),
        },
        timeout: Duration::from_millis(100),
    })
    .unwrap();
    // Only the handle: the writer's queue is dropped, as in a stopping tower.
    let metrics = Arc::new(Metrics::new("regtest"));
    let key_dir = tempfile::tempdir().unwrap();
    let service = crate::service::prepare(rpc, Arc::new(ZmqStats::new()), metrics.clone()).handle;
    let state = ApiState {
        service,
        store: Arc::new(Mutex::new(store)),
        ha: crate::ha::HaState::alone("contract".into(), "http://127.0.0.1:1".into(), metrics),
        rate_limits: None,
        network: crate::chain::Network::Regtest,
        identity: Arc::new(
            crate::identity::TowerIdentity::load_or_create(&key_dir.path().join("k")).unwrap(),
        ),
        channel_key_ttl_secs: 86_400,
        allow_private_webhook_targets: false,
    };
    let app = router(state.clone(), 64 * 1024);

    for case in cases() {
        let what = format!("{} {}", case.method, case.uri);
        let mut request = Request::builder().method(case.method).uri(case.uri);
        if case.token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        if let Some(length) = case.announced_length {
            request = request.header("content-length", length.to_string());
        }
        let request = request
            .body(case.body.map_or_else(Body::empty, Body::from))
            .unwrap();
        let response = app.clone().oneshot(request).await.unwrap();
        let status = response.status().as_u16();
        assert_eq!(status, case.status, "{what}");
        assert!(
            response.headers().contains_key("x-request-id"),
            "{what}: every answer carries X-Request-Id"
        );
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
        let body: Value = serde_json::from_slice(&bytes)
            .unwrap_or_else(|e| panic!("{what}: the answer is not JSON ({e}): {bytes:?}"));
        let schema = match template_of(&doc, case.uri) {
            Some(template) => {
                let operation = operations(&doc)
                    .remove(&(case.method.to_string(), template.clone()))
                    .unwrap_or_else(|| panic!("openapi.json has no {} {template}", case.method));
                let response = operation["responses"]
                    .get(status.to_string())
                    .map(|r| resolve(&doc, r))
                    .unwrap_or_else(|| panic!("{what} answered {status}; openapi.json does not list it"));
                if let Some(code) = case.code {
                    let named = response["x-error-codes"].as_array().cloned().unwrap_or_default();
                    assert!(
                        named.contains(&code.as_str().into()),
                        "{what}: openapi.json's {status} response does not name {code}"
                    );
                }
                response
                    .pointer("/content/application~1json/schema")
                    .unwrap_or_else(|| panic!("{what}: the {status} answer has no JSON schema"))
            }
            None => component(&doc, "Error"),
        };
        assert_valid(&doc, schema, &body, &what);
        if let Some(code) = case.code {
            assert_eq!(body["error"]["code"], code.as_str(), "{what}: {body}");
        }
    }

    // With an xpub, a channel key as documented, at the next index each time.
    let xpub = bitcoin::bip32::Xpub::from_priv(
        &bitcoin::secp256k1::Secp256k1::new(),
        &bitcoin::bip32::Xpriv::new_master(bitcoin::NetworkKind::Test, &[9; 32]).unwrap(),
    );
    state
        .store
        .lock()
        .unwrap()
        .write(|tx| {
            let encoded = crate::chain::keys::encode_xpub(&xpub, crate::chain::Network::Regtest);
            tx.set_merchant_xpub(1, Some(&encoded))
        })
        .unwrap();
    let schema = component(&doc, "ChannelKey");
    for index in 0..2 {
        let request = Request::builder()
            .method("POST")
            .uri("/v1/channel-keys")
            .header("authorization", format!("Bearer {token}"))
            .body(Body::empty())
            .unwrap();
        let response = app.clone().oneshot(request).await.unwrap();
        assert_eq!(response.status().as_u16(), 201, "POST /v1/channel-keys");
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
        let body: Value = serde_json::from_slice(&bytes).unwrap();
        assert_valid(&doc, schema, &body, "POST /v1/channel-keys");
        let (key, _) = crate::channel::custody::channel_key(&xpub, index).unwrap();
        assert_eq!(body["pubkey"], key.to_string(), "{body}");
        assert_eq!(body["origin"]["path"], format!("m/0/{index}"), "{body}");
    }

    // A known path with a method it does not serve: 405, no body, an Allow header.
    let request = Request::builder()
        .method("DELETE")
        .uri("/v1/channels")
        .header("authorization", format!("Bearer {token}"))
        .body(Body::empty())
        .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status().as_u16(), 405, "DELETE /v1/channels");
    assert!(
        response.headers().contains_key("allow"),
        "405 names the allowed methods"
    );
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
    assert!(bytes.is_empty(), "405 has no body: {bytes:?}");

    let response = metrics_router(state)
        .oneshot(Request::builder().uri("/metrics").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let content_type = response.headers()["content-type"].to_str().unwrap().to_string();
    assert!(content_type.starts_with("text/plain"), "{content_type}");
}
