//! The OpenAPI document as the server answers, not only as its handlers
//! are annotated: utoipa describes each route's data, and this completes it
//! with what every route shares, so that a client generated from it works.
//!
//! - Every JSON success is wrapped in the envelope `{statusCode, message,
//!   data, timestamp, consistencyToken?}` the server sends.
//! - Every error status an operation can answer is listed with the error
//!   envelope and the codes that status carries: 400 where it takes
//!   parameters or a body, 401 and 403 where it needs a credential, 404
//!   where its path names something, 408, 429 and 503 everywhere (the
//!   request timeout, the rate limits and an unreachable store apply to every
//!   route), and whatever the handler's annotation adds (402, 409, 503, …).

use lx_protocol::ErrorCode;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use utoipa::OpenApi;

use super::ApiDoc;
use crate::config::Config;

/// The document `/api/v1/openapi.json` serves: the limits that depend on
/// the configuration (the longest session) are this server's.
pub fn document(config: &Config) -> Value {
    let mut doc = serde_json::to_value(ApiDoc::openapi()).unwrap_or_else(|_| json!({}));
    complete(&mut doc);
    constrain(&mut doc, config);
    add_links(&mut doc);
    unique_operation_ids(&mut doc);
    doc
}

/// Every spelling `uuid::Uuid::parse_str` accepts: hyphenated, simple,
/// braced and URN.
const UUID_PATTERN: &str = "^([0-9a-fA-F]{32}|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}|\\{[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\\}|urn:uuid:[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})$";

/// An address, in a request or an answer: 40 hex digits. All lower- or all
/// upper-case carries no checksum; mixed case must be the exact EIP-55
/// checksum (the server refuses a mistyped one), which a pattern cannot say
/// and the description does.
const ADDRESS_PATTERN: &str = "^0x[0-9a-fA-F]{40}$";
const ADDRESS_DESCRIPTION: &str =
    "0x and 40 hex digits; in mixed case, exactly the EIP-55 checksum encoding.";
/// r, s and v; v is 0, 1, 27 or 28.
const SIGNATURE_PATTERN: &str = "^0x[0-9a-fA-F]{128}(00|01|1[bB]|1[cC])$";
/// One session state, as `GET /sessions?state=` takes them.
const STATE: &str = "(REQUESTED|ASSIGNED|LIVE|PAUSED|ENDED|CANCELLED|EXPIRED)";
/// A name: 1 to 100 characters, not all blank.
const NAME: &str = r#"{"type": "string", "minLength": 1, "maxLength": 100, "pattern": "\\S"}"#;

fn name_schema() -> Value {
    serde_json::from_str(NAME).unwrap_or_else(|_| json!({"type": "string"}))
}

fn range(min: f64, max: f64) -> Value {
    json!({"minimum": min, "maximum": max})
}

fn int_range(min: u64, max: u64) -> Value {
    json!({"minimum": min, "maximum": max})
}

fn pattern(p: &str) -> Value {
    json!({"pattern": p})
}

/// Merges `patch` into the object at `pointer`, if there is one.
fn merge(doc: &mut Value, pointer: &str, patch: Value) {
    if let (Some(Value::Object(target)), Value::Object(patch)) = (doc.pointer_mut(pointer), patch) {
        target.extend(patch);
    }
}

/// Merges `patch` into the schema of the query or path parameter `name`.
fn merge_param(doc: &mut Value, path: &str, method: &str, name: &str, patch: &Value) {
    let pointer = format!("/paths/{}/{method}/parameters", path.replace('/', "~1"));
    let Some(Value::Array(params)) = doc.pointer_mut(&pointer) else {
        return;
    };
    for param in params.iter_mut().filter(|p| p["name"] == name) {
        if let (Some(Value::Object(schema)), Value::Object(patch)) =
            (param.get_mut("schema"), patch)
        {
            schema.extend(patch.clone());
        }
    }
}

/// What the handlers enforce and utoipa cannot derive: ranges, patterns,
/// lengths and the enum values a request may not set.
fn constrain(doc: &mut Value, config: &Config) {
    let max_duration = u64::from(config.sessions.max_duration_seconds);
    let schemas = "/components/schemas";
    let latitude = range(-90.0, 90.0);
    let longitude = range(-180.0, 180.0);
    for (schema, lat, lng) in [
        ("CreateSessionRequest", "lat", "lng"),
        ("LocationRequest", "lat", "lng"),
        ("PointDto", "lat", "lng"),
        ("UpdateWorkspaceRequest", "coverageLat", "coverageLng"),
    ] {
        merge(
            doc,
            &format!("{schemas}/{schema}/properties/{lat}"),
            latitude.clone(),
        );
        merge(
            doc,
            &format!("{schemas}/{schema}/properties/{lng}"),
            longitude.clone(),
        );
    }
    let session = format!("{schemas}/CreateSessionRequest/properties");
    merge(
        doc,
        &format!("{session}/maxDurationSeconds"),
        int_range(1, max_duration),
    );
    merge(
        doc,
        &format!("{session}/geofenceRadiusMeters"),
        int_range(1, u64::from(crate::routes::sessions::MAX_GEOFENCE_RADIUS_M)),
    );
    merge(doc, &format!("{session}/minTrustTier"), int_range(0, 1));
    merge(
        doc,
        &format!("{schemas}/LocationRequest/properties/accuracyMeters"),
        json!({"minimum": 0}),
    );
    merge(
        doc,
        &format!("{schemas}/SampleJson/properties/accuracyMeters"),
        range(0.0, 42_949_672.95),
    );
    merge(
        doc,
        &format!("{schemas}/SampleJson/properties/signature"),
        pattern(SIGNATURE_PATTERN),
    );
    merge(
        doc,
        &format!("{schemas}/SampleJson/properties/capturedAt"),
        json!({"format": "date-time"}),
    );
    merge(
        doc,
        &format!("{schemas}/HeartbeatRequest/properties/batteryPercent"),
        int_range(0, 100),
    );
    // BUSY is the system's to set.
    let settable = json!({"enum": ["ONLINE", "OFFLINE", null], "type": ["string", "null"]});
    for schema in ["HeartbeatRequest", "UpdateWorkspaceRequest"] {
        let at = format!("{schemas}/{schema}/properties/availabilityState");
        if let Some(v) = doc.pointer_mut(&at) {
            *v = settable.clone();
        }
    }
    let workspace = format!("{schemas}/UpdateWorkspaceRequest/properties");
    merge(
        doc,
        &format!("{workspace}/coverageRadiusMeters"),
        json!({"minimum": 1}),
    );
    merge(
        doc,
        &format!("{workspace}/offerTimeoutSeconds"),
        int_range(5, 600),
    );
    for at in [
        format!("{workspace}/name"),
        format!("{schemas}/CreateWorkspaceRequest/properties/name"),
        format!("{schemas}/RegisterOperatorRequest/properties/name"),
    ] {
        // The type stays as utoipa wrote it (a patch's name may be null).
        let mut name = name_schema();
        if let Some(o) = name.as_object_mut() {
            o.remove("type");
        }
        merge(doc, &at, name);
    }
    merge(
        doc,
        &format!("{schemas}/CreateWorkspaceRequest/properties/slug"),
        json!({"minLength": 3, "maxLength": 48, "pattern": "^[a-z0-9]([a-z0-9-]*[a-z0-9])?$"}),
    );
    merge(
        doc,
        &format!("{schemas}/CreateWorkspaceRequest/properties/roles"),
        json!({"minItems": 1, "maxItems": 2, "uniqueItems": true}),
    );
    merge(
        doc,
        &format!("{schemas}/CreateApiKeyRequest/properties/scopes"),
        json!({"minItems": 1}),
    );
    for (schema, field) in [
        ("ChallengeRequest", "walletAddress"),
        ("WalletLoginRequest", "walletAddress"),
        ("CreateWorkspaceRequest", "walletAddress"),
        ("RegisterOperatorRequest", "address"),
    ] {
        merge(
            doc,
            &format!("{schemas}/{schema}/properties/{field}"),
            json!({"pattern": ADDRESS_PATTERN, "description": ADDRESS_DESCRIPTION}),
        );
    }
    for (schema, field) in [
        ("WalletLoginRequest", "signature"),
        ("CreateWorkspaceRequest", "signature"),
        ("RegisterOperatorRequest", "proof"),
    ] {
        merge(
            doc,
            &format!("{schemas}/{schema}/properties/{field}"),
            pattern(SIGNATURE_PATTERN),
        );
    }
    merge(
        doc,
        &format!("{schemas}/CreateWebhookRequest/properties/url"),
        json!({"format": "uri", "pattern": "^https?://[^\\s/?#]+"}),
    );
    for (path, method, name, patch) in [
        ("/api/v1/pricing/quote", "get", "lat", latitude.clone()),
        ("/api/v1/pricing/quote", "get", "lng", longitude.clone()),
        (
            "/api/v1/pricing/quote",
            "get",
            "durationSeconds",
            int_range(1, max_duration),
        ),
        ("/api/v1/sessions", "get", "limit", int_range(1, 500)),
        (
            "/api/v1/sessions",
            "get",
            "before",
            json!({"format": "date-time"}),
        ),
        (
            "/api/v1/sessions",
            "get",
            "side",
            json!({"enum": ["CONSUMER", "OPERATOR", "ALL"]}),
        ),
        (
            "/api/v1/sessions",
            "get",
            "state",
            pattern(&format!("^({STATE}(,{STATE})*)?$")),
        ),
        (
            "/api/v1/sessions/{id}/telemetry",
            "get",
            "limit",
            int_range(1, 10_000),
        ),
        (
            "/api/v1/workspaces/{id}/operators",
            "get",
            "limit",
            int_range(1, 1000),
        ),
        ("/api/v1/wallet/events", "get", "limit", int_range(1, 200)),
        (
            "/api/v1/wallet/events",
            "get",
            "cursor",
            pattern("^[0-9]+:[0-9]+$"),
        ),
        (
            "/api/v1/webhooks/{id}/deliveries",
            "get",
            "limit",
            int_range(1, 200),
        ),
        (
            "/api/v1/workspaces/{id}/enrollment-tokens/{tokenId}",
            "delete",
            "tokenId",
            pattern("^[0-9a-fA-F]{64}$"),
        ),
    ] {
        merge_param(doc, path, method, name, &patch);
    }
    patterns_for_formats(doc);
    for (schema, example) in [
        (
            "CreateSessionRequest",
            json!({"lat": 4.711, "lng": -74.072, "maxDurationSeconds": 120, "minTrustTier": 1}),
        ),
        (
            "UpdateWorkspaceRequest",
            json!({"availabilityState": "ONLINE", "coverageLat": 4.711, "coverageLng": -74.072,
                   "coverageRadiusMeters": 2000, "deviceKind": "DRONE", "autoAccept": true}),
        ),
        (
            "ChallengeRequest",
            json!({"walletAddress": "0x52908400098527886e0f7030069857d2e4169ee7"}),
        ),
        (
            "CreateApiKeyRequest",
            json!({"label": "agent", "environment": "LIVE",
                   "scopes": ["sessions:read", "sessions:create", "pricing:read"]}),
        ),
        (
            "CreateWebhookRequest",
            json!({"url": "https://hooks.example.com/lx", "events": ["session.live", "session.ended"]}),
        ),
        (
            "LocationRequest",
            json!({"lat": 4.711, "lng": -74.072, "accuracyMeters": 4.5, "sequence": 1}),
        ),
    ] {
        merge(
            doc,
            &format!("{schemas}/{schema}"),
            json!({"examples": [example]}),
        );
    }
    for (name, example) in [
        ("lat", json!(4.711)),
        ("lng", json!(-74.072)),
        ("durationSeconds", json!(120)),
    ] {
        merge_param(
            doc,
            "/api/v1/pricing/quote",
            "get",
            name,
            &json!({"examples": [example]}),
        );
    }
}

/// Every `format: uuid` string gets the pattern the server parses; every
/// address the server writes, the EIP-55 shape.
fn patterns_for_formats(value: &mut Value) {
    match value {
        Value::Object(map) => {
            if map.get("format").and_then(Value::as_str) == Some("uuid")
                && !map.contains_key("pattern")
            {
                map.insert("pattern".into(), json!(UUID_PATTERN));
            }
            // JSON Schema knows int32 and int64; the unsigned widths the
            // server parses are said with their bounds.
            // (utoipa spells them `u-int32`.)
            let widest: Option<(&str, u64)> = match map.get("format").and_then(Value::as_str) {
                Some("uint8" | "u-int8") => Some(("uint8", u8::MAX.into())),
                Some("uint16" | "u-int16") => Some(("uint16", u16::MAX.into())),
                Some("uint32" | "u-int32") => Some(("uint32", u32::MAX.into())),
                Some("uint64" | "u-int64") => Some(("uint64", u64::MAX)),
                _ => None,
            };
            if let Some((format, widest)) = widest {
                map.insert("format".into(), json!(format));
                map.entry("minimum").or_insert(json!(0));
                map.entry("maximum").or_insert(json!(widest));
            }
            for (key, v) in map.iter_mut() {
                if matches!(key.as_str(), "walletAddress" | "address" | "signer")
                    && v.get("type").is_some()
                    && v.get("pattern").is_none()
                    && let Some(o) = v.as_object_mut()
                {
                    o.insert("pattern".into(), json!(ADDRESS_PATTERN));
                }
                patterns_for_formats(v);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(patterns_for_formats),
        _ => {}
    }
}

/// What each error status means here, beside the codes it carries.
fn error_meaning(status: u16) -> &'static str {
    match status {
        400 => {
            "The request is malformed or refused as given: `message` names the field and the problem."
        }
        401 => "No credential, or one that is unknown, expired or revoked.",
        402 => "The consumer owes an unpaid settlement: deposit to pay it first.",
        403 => "The credential lacks the scope or role, or is another device's.",
        404 => "Nothing by that id the caller may see (another workspace's is not found either).",
        408 => "The server did not answer within its request timeout; retry.",
        409 => "The resource is not in a state that allows this: `detail` names the state.",
        429 => {
            "Too many requests from this address or credential; `Retry-After` says when to try again."
        }
        500 => "A bug on the server's side; nothing leaks in the message.",
        503 => "Something the server depends on is unreachable or has no capacity; retry.",
        _ => "An error.",
    }
}

fn codes_by_status() -> BTreeMap<u16, Vec<&'static str>> {
    let mut by_status: BTreeMap<u16, Vec<&'static str>> = BTreeMap::new();
    for code in ErrorCode::ALL {
        by_status
            .entry(code.http_status())
            .or_default()
            .push(code.as_str());
    }
    by_status
}

fn error_response_name(status: u16) -> String {
    format!("Error{status}")
}

/// `components.responses.ErrorNNN` for each status an error code has.
fn error_responses(by_status: &BTreeMap<u16, Vec<&'static str>>) -> Map<String, Value> {
    by_status
        .iter()
        .map(|(&status, codes)| {
            let schema = json!({
                "allOf": [
                    {"$ref": "#/components/schemas/ErrorBody"},
                    {
                        "type": "object",
                        "properties": {
                            "statusCode": {"type": "integer", "const": status},
                            "code": {"type": "string", "enum": codes},
                        },
                    },
                ],
            });
            let description = format!("{} Codes: {}.", error_meaning(status), codes.join(", "));
            (
                error_response_name(status),
                json!({
                    "description": description,
                    "content": {"application/json": {"schema": schema}},
                }),
            )
        })
        .collect()
}

/// The success envelope around `data`.
fn envelope(status: u16, data: &Value) -> Value {
    json!({
        "type": "object",
        "required": ["statusCode", "message", "data", "timestamp"],
        "properties": {
            "statusCode": {"type": "integer", "const": status},
            "message": {"type": "string"},
            "data": data,
            "timestamp": {"type": "string", "format": "date-time"},
            "consistencyToken": {
                "type": "string",
                "description": "On writes: send it back as `x-lx-consistency-token` to read your own write on any replica.",
            },
        },
    })
}

/// The statuses every operation shares, by what it takes.
fn shared_error_statuses(path: &str, method: &str, operation: &Value) -> Vec<u16> {
    let mut statuses = vec![408, 429, 500, 503];
    let takes_input = operation["parameters"]
        .as_array()
        .is_some_and(|p| !p.is_empty())
        || operation.get("requestBody").is_some();
    if takes_input {
        statuses.push(400);
    }
    if operation["security"]
        .as_array()
        .is_some_and(|s| !s.is_empty())
    {
        statuses.extend([401, 403]);
    }
    if path.contains('{') {
        statuses.push(404);
    }
    if method != "get" {
        // A write meets the resource in a state that may forbid it.
        statuses.push(409);
    }
    // Signing in with a wallet signature: a signature by another wallet is
    // a failed sign-in.
    if method == "post" && matches!(path, "/api/v1/auth/wallet/login" | "/api/v1/workspaces") {
        statuses.push(401);
    }
    statuses
}

/// Handlers in different modules share names (`create`, `list`, …); a
/// generated client needs one name per operation. A name used more than
/// once is prefixed with its tag: `sessions_create`, `webhooks_create`.
fn unique_operation_ids(doc: &mut Value) {
    let Some(paths) = doc["paths"].as_object_mut() else {
        return;
    };
    let mut uses: BTreeMap<String, usize> = BTreeMap::new();
    for operation in paths
        .values()
        .filter_map(Value::as_object)
        .flat_map(|o| o.values())
    {
        if let Some(id) = operation["operationId"].as_str() {
            *uses.entry(id.to_owned()).or_default() += 1;
        }
    }
    for operation in paths
        .values_mut()
        .filter_map(Value::as_object_mut)
        .flat_map(|o| o.values_mut())
    {
        let Some(id) = operation["operationId"].as_str().map(str::to_owned) else {
            continue;
        };
        if uses.get(&id).is_some_and(|&n| n > 1) {
            let tag = operation["tags"][0]
                .as_str()
                .unwrap_or("api")
                .to_lowercase();
            operation["operationId"] = json!(format!("{tag}_{id}"));
        }
    }
}

/// The parameter an operation's answer supplies to the operations below
/// it: `POST /sessions` answers a session whose `id` every
/// `/sessions/{id}/…` operation takes, and so on. Schemathesis's stateful
/// phase follows these.
const LINKS: &[(&str, &str, &str, &str)] = &[
    (
        "post",
        "/api/v1/sessions",
        "/api/v1/sessions/{id}",
        "/data/id",
    ),
    (
        "get",
        "/api/v1/sessions",
        "/api/v1/sessions/{id}",
        "/data/0/id",
    ),
    (
        "post",
        "/api/v1/workspaces",
        "/api/v1/workspaces/{id}",
        "/data/id",
    ),
    (
        "get",
        "/api/v1/workspaces",
        "/api/v1/workspaces/{id}",
        "/data/0/id",
    ),
    (
        "post",
        "/api/v1/webhooks",
        "/api/v1/webhooks/{id}",
        "/data/id",
    ),
    (
        "post",
        "/api/v1/operators/heartbeat",
        "/api/v1/operators/{id}",
        "/data/id",
    ),
    (
        "post",
        "/api/v1/operators/register",
        "/api/v1/operators/{id}",
        "/data/operatorId",
    ),
];

fn add_links(doc: &mut Value) {
    let Some(paths) = doc["paths"].as_object().cloned() else {
        return;
    };
    for (method, from, below, id) in LINKS {
        let mut links = Map::new();
        for (path, item) in &paths {
            if !(path == below || path.starts_with(&format!("{below}/"))) {
                continue;
            }
            for target in item.as_object().map(|o| o.keys()).into_iter().flatten() {
                let reference = format!("#/paths/{}/{target}", path.replace('/', "~1"));
                let name = format!(
                    "{target}{}",
                    path.trim_start_matches(below).replace('/', "_")
                );
                links.insert(
                    if name == *target {
                        format!("{target}_one")
                    } else {
                        name
                    },
                    json!({
                        "operationRef": reference,
                        "parameters": {"id": format!("$response.body#{id}")},
                    }),
                );
            }
        }
        let Some(responses) = doc
            .pointer_mut(&format!(
                "/paths/{}/{method}/responses",
                from.replace('/', "~1")
            ))
            .and_then(Value::as_object_mut)
        else {
            continue;
        };
        for (status, response) in responses.iter_mut() {
            if status.starts_with('2') && response.get("$ref").is_none() {
                response["links"] = Value::Object(links.clone());
            }
        }
    }
}

/// A body whose fields are all optional may be left out (`{}` is assumed).
fn body_optional_when_nothing_required(operation: &mut Value, schemas: &Value) {
    let Some(body) = operation.get_mut("requestBody") else {
        return;
    };
    let schema = &body["content"]["application/json"]["schema"];
    let resolved = match schema["$ref"].as_str() {
        Some(r) => r
            .strip_prefix("#/components/schemas/")
            .map_or(&Value::Null, |name| &schemas[name]),
        None => schema,
    };
    let nothing_required = resolved["type"] == "object"
        && resolved["required"].as_array().is_none_or(|r| r.is_empty());
    if nothing_required {
        body["required"] = json!(false);
    }
}

fn complete(doc: &mut Value) {
    let by_status = codes_by_status();
    let schemas = doc["components"]["schemas"].clone();
    let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) else {
        return;
    };
    for (path, item) in paths.iter_mut() {
        let Some(operations) = item.as_object_mut() else {
            continue;
        };
        for (method, operation) in operations.iter_mut() {
            let shared = shared_error_statuses(path, method, operation);
            body_optional_when_nothing_required(operation, &schemas);
            let Some(responses) = operation
                .get_mut("responses")
                .and_then(Value::as_object_mut)
            else {
                continue;
            };
            for (status, response) in responses.iter_mut() {
                let Ok(code) = status.parse::<u16>() else {
                    continue;
                };
                if (200..300).contains(&code) {
                    if let Some(schema) = response
                        .pointer_mut("/content/application~1json/schema")
                        .map(Value::take)
                    {
                        response["content"]["application/json"]["schema"] = envelope(code, &schema);
                    }
                } else if by_status.contains_key(&code) {
                    *response = json!({"$ref": format!("#/components/responses/{}", error_response_name(code))});
                }
            }
            for status in shared {
                responses.entry(status.to_string()).or_insert_with(|| {
                    json!({"$ref": format!("#/components/responses/{}", error_response_name(status))})
                });
            }
        }
    }
    let components = doc
        .as_object_mut()
        .map(|d| d.entry("components").or_insert_with(|| json!({})));
    if let Some(components) = components.and_then(Value::as_object_mut) {
        let responses = components.entry("responses").or_insert_with(|| json!({}));
        if let Some(responses) = responses.as_object_mut() {
            responses.extend(error_responses(&by_status));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_json_success_is_enveloped_and_every_error_refers_to_its_status() {
        let doc = document(&crate::config::Config::defaults());
        let quote = &doc["paths"]["/api/v1/pricing/quote"]["get"]["responses"];
        let ok = &quote["200"]["content"]["application/json"]["schema"];
        assert_eq!(ok["properties"]["statusCode"]["const"], 200);
        assert_eq!(
            ok["properties"]["data"]["$ref"],
            "#/components/schemas/QuoteDto"
        );
        for status in ["400", "401", "403", "408", "429", "503"] {
            assert_eq!(
                quote[status]["$ref"],
                format!("#/components/responses/Error{status}"),
                "{status}"
            );
        }
        assert!(quote.get("404").is_none(), "no id in its path");
        let e409 = &doc["components"]["responses"]["Error409"];
        let codes = &e409["content"]["application/json"]["schema"]["allOf"][1]["properties"]["code"]
            ["enum"];
        assert!(codes.as_array().unwrap().contains(&json!("INVALID_STATE")));
        assert!(!codes.as_array().unwrap().contains(&json!("INVALID_INPUT")));
    }

    #[test]
    fn operation_ids_are_unique() {
        let doc = document(&crate::config::Config::defaults());
        let mut ids: Vec<&str> = doc["paths"]
            .as_object()
            .unwrap()
            .values()
            .flat_map(|item| item.as_object().unwrap().values())
            .map(|op| op["operationId"].as_str().unwrap())
            .collect();
        let all = ids.len();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), all, "{ids:?}");
    }
}
