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

use std::collections::BTreeMap;
use std::sync::OnceLock;

use lx_protocol::ErrorCode;
use serde_json::{Map, Value, json};
use utoipa::OpenApi;

use super::ApiDoc;

/// The document `/api/v1/openapi.json` serves, built once.
pub fn document() -> &'static Value {
    static DOCUMENT: OnceLock<Value> = OnceLock::new();
    DOCUMENT.get_or_init(|| {
        let mut doc = serde_json::to_value(ApiDoc::openapi()).unwrap_or_else(|_| json!({}));
        complete(&mut doc);
        doc
    })
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
fn envelope(status: u16, data: Value) -> Value {
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
fn shared_error_statuses(path: &str, operation: &Value) -> Vec<u16> {
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
    statuses
}

fn complete(doc: &mut Value) {
    let by_status = codes_by_status();
    let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) else {
        return;
    };
    for (path, item) in paths.iter_mut() {
        let Some(operations) = item.as_object_mut() else {
            continue;
        };
        for (_method, operation) in operations.iter_mut() {
            let shared = shared_error_statuses(path, operation);
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
                        response["content"]["application/json"]["schema"] = envelope(code, schema);
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
        let doc = document();
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
}
