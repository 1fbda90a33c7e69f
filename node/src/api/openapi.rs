//! The API's OpenAPI 3.1 document, `GET /v1/openapi.json`, derived with utoipa from the
//! handlers' own types: the wire types (`ToSchema`), the query structs (`IntoParams`) and the
//! `#[utoipa::path]` attribute on each handler, which names its path, parameters, body, answers,
//! the problem codes it can answer (the groups below) and the bearer-token scope it needs.
//!
//! The derived document is then completed with what the attributes cannot say ([`document`]):
//! the bound of every integer parameter, the node's own `max_events_per_request`, and, on a node
//! with no token configured, that no operation needs one. `scripts/api-fuzz` runs a
//! property-based fuzzer (schemathesis) driven by the served document against real nodes: every
//! request the document allows must be taken, every request it refuses must be refused.
//!
//! `docs/openapi.json` is the document of a node with tokens and the default limits, as
//! committed; a test compares the two (set `UPDATE_OPENAPI=1` to rewrite the file) and
//! `scripts/openapi-validate` validates the file as OpenAPI 3.1. Another test requests every
//! documented operation from the real router and compares the router's own list of routes
//! ([`super::routes`]) with the document's.

use utoipa::openapi::path::Operation;
use utoipa::openapi::schema::{AdditionalProperties, Schema, SchemaType};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{Object, RefOr, Type};
use utoipa::{Modify, Number, OpenApi};

use crate::api::dto::{EventView, ProblemDetails, StreamTooSlow, PARAMETER_MAX};
use crate::api::limits::ApiLimits;
use crate::api::problems::MetricsProblems;

/// Name of the bearer-token security scheme in the document.
pub const BEARER: &str = "bearer";

/// The document, built from the handlers' attributes and types.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "tradeloop node API",
        description = "The HTTP API of a tradeloop node: submit signed trade events, read what is \
            committed (events, proofs, blocks, traces, trades, participants), follow commits as \
            server-sent events, read the node's status and metrics. Whole-request errors are \
            RFC 9457 problems (`application/problem+json`) with a stable `code` (docs/api.md).",
    ),
    paths(
        super::handlers::submit_events,
        super::handlers::status,
        super::reads::get_event,
        super::reads::get_event_proof,
        super::reads::list_blocks,
        super::reads::get_block,
        super::reads::get_trace,
        super::reads::get_trade,
        super::reads::get_trade_proof,
        super::reads::participants,
        super::stream::stream,
        super::handlers::openapi_json,
        metrics,
    ),
    components(schemas(ProblemDetails, EventView, StreamTooSlow)),
    modifiers(&BearerScheme),
    tags(
        (name = "events", description = "Submitting signed events"),
        (name = "reads", description = "What is committed, read from the node's ledger"),
        (name = "stream", description = "Committed events as they are committed"),
        (name = "node", description = "The node itself: status, metrics, this document"),
    ),
)]
struct ApiDoc;

/// Whether a node checks bearer tokens; its document says which.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tokens {
    /// `[[api.tokens]]` configured: each operation needs a token with the scope it names.
    Required,
    /// No token configured (loopback only): every operation is open, and a token is ignored.
    NoneConfigured,
}

/// The committed document, `docs/openapi.json`: a node with tokens and the default limits.
pub fn openapi() -> utoipa::openapi::OpenApi {
    document(&ApiLimits::default(), Tokens::Required)
}

/// The document of a node with `limits` and `tokens`, as `GET /v1/openapi.json` serves it: the
/// derived document completed with what the derive cannot know or say.
pub fn document(limits: &ApiLimits, tokens: Tokens) -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    bound_integer_parameters(&mut doc);
    bound_submit_body(&mut doc, limits.max_events_per_request);
    if tokens == Tokens::NoneConfigured {
        open_security(&mut doc);
    }
    doc
}

/// The node's document as compact JSON, made once when its router is built.
pub(super) fn served_text(limits: &ApiLimits, tokens: Tokens) -> Result<String, String> {
    serde_json::to_string(&document(limits, tokens)).map_err(|e| e.to_string())
}

/// The document as pretty-printed JSON with a final newline: the form of `docs/openapi.json`.
pub fn openapi_pretty_json() -> Result<String, serde_json::Error> {
    serde_json::to_string_pretty(&openapi()).map(|mut text| {
        text.push('\n');
        text
    })
}

/// The node's metrics
///
/// Prometheus metrics in the OpenMetrics text format: API requests by route and status, the
/// chain, the mempool, peers and sync. The handler is `api::scrape::metrics`; this function only
/// carries its description (the route test checks that the router serves it).
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "node",
    responses(
        (status = 200, description = "The metrics, OpenMetrics text", body = String,
            content_type = crate::metrics::CONTENT_TYPE),
        MetricsProblems,
    ),
    security(("bearer" = ["metrics"])),
)]
#[allow(dead_code)]
fn metrics() {}

/// Adds the bearer-token security scheme.
struct BearerScheme;

impl Modify for BearerScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let scheme = HttpBuilder::new()
            .scheme(HttpAuthScheme::Bearer)
            .description(Some(
                "`Authorization: Bearer TOKEN`. The node keeps the SHA-256 of each token \
                 (`[[api.tokens]]` in node.toml; `tradeloop token new` makes one), each with \
                 scopes: `read` (every GET under /v1: status, events, proofs, blocks, traces, \
                 trades, participants, the stream, this document), `submit` (POST /v1/events), \
                 `metrics` (GET /metrics). Each operation names the scope it needs. A missing or \
                 unknown token is 401 `UNAUTHORIZED` (with `WWW-Authenticate: Bearer`), a token \
                 without the scope 403 `FORBIDDEN`. A node with no token configured (allowed \
                 only when the API listens on a loopback address) needs none.",
            ))
            .build();
        openapi
            .components
            .get_or_insert_with(Default::default)
            .add_security_scheme(BEARER, SecurityScheme::Http(scheme));
    }
}

/// Every operation of the document.
fn operations_mut(doc: &mut utoipa::openapi::OpenApi) -> impl Iterator<Item = &mut Operation> {
    doc.paths.paths.values_mut().flat_map(|item| {
        [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.options,
            &mut item.head,
            &mut item.patch,
            &mut item.trace,
        ]
        .into_iter()
        .flatten()
    })
}

/// Bounds every integer parameter the node reads into an unsigned integer (the derive gives
/// those a `minimum` of 0 or more) by [`PARAMETER_MAX`]. The derive writes `u64` as `int64`,
/// whose implied bound (2^63 - 1) is below what the node takes, so that format goes.
fn bound_integer_parameters(doc: &mut utoipa::openapi::OpenApi) {
    for operation in operations_mut(doc) {
        for parameter in operation.parameters.iter_mut().flatten() {
            let RefOr::T(parameter) = parameter else { continue };
            if let Some(RefOr::T(Schema::Object(schema))) = &mut parameter.schema {
                bound_unsigned(schema);
            }
        }
    }
}

fn bound_unsigned(schema: &mut Object) {
    let unsigned = match schema.minimum {
        Some(Number::UInt(_)) => true,
        Some(Number::Int(n)) => n >= 0,
        Some(Number::Float(n)) => n >= 0.0,
        None => false,
    };
    if schema.schema_type == SchemaType::Type(Type::Integer) && unsigned {
        schema.maximum = Some(Number::from(PARAMETER_MAX));
        schema.format = None;
    }
}

/// `POST /v1/events` takes one envelope or an array of 1 to `max_events` of them (400
/// `NO_EVENTS` below, 413 `TOO_MANY_EVENTS` above); an envelope has exactly `body` and
/// `signature` (the ledger's parser refuses any other member; the wire type itself stays
/// lenient, for the CLI that reads envelopes in answers).
fn bound_submit_body(doc: &mut utoipa::openapi::OpenApi, max_events: usize) {
    let Some(components) = doc.components.as_mut() else { return };
    if let Some(RefOr::T(Schema::OneOf(body))) = components.schemas.get_mut("SubmitBody") {
        for item in &mut body.items {
            if let RefOr::T(Schema::Array(array)) = item {
                array.min_items = Some(1);
                array.max_items = Some(max_events);
            }
        }
    }
    if let Some(RefOr::T(Schema::Object(envelope))) = components.schemas.get_mut("Envelope") {
        envelope.additional_properties = Some(Box::new(AdditionalProperties::FreeForm(false)));
    }
}

/// What a node with no token configured adds to its document's description.
pub const OPEN_NODE_NOTE: &str = " This node has no bearer token configured (its API listens \
    on a loopback address only): every operation is open, as each operation's `security` says \
    with the empty requirement `{}`; a token that is sent is ignored.";

/// A node with no token configured answers every request without one: each operation also
/// lists the empty requirement `{}`, OpenAPI's "no credentials needed". The scope stays beside
/// it, for when the operator adds tokens.
fn open_security(doc: &mut utoipa::openapi::OpenApi) {
    for operation in operations_mut(doc) {
        if let Some(security) = operation.security.as_mut() {
            security.insert(0, SecurityRequirement::default());
        }
    }
    let description = doc.info.description.take().unwrap_or_default();
    doc.info.description = Some(description + OPEN_NODE_NOTE);
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::collections::BTreeSet;
    use std::time::Duration;

    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use axum::Router;
    use serde_json::Value;
    use tokio::sync::{broadcast, mpsc};
    use tower::ServiceExt;
    use tradeloop_crypto::Hash;

    use super::*;
    use crate::api::auth::{Access, Scope, TokenEntry};
    use crate::api::testing::{empty_ledger, run_fake_runtime, FakeRuntime};
    use axum::http::header;

    use axum::response::IntoResponse;

    use crate::api::problem::{Problem, ProblemCode};
    use crate::api::router::routes;
    use crate::api::{router_with_shared, ApiLimits, ApiShared};

    /// No request of these tests takes longer.
    const DEADLINE: Duration = Duration::from_secs(10);
    /// The operations of an OpenAPI path item.
    const METHODS: [&str; 8] =
        ["get", "put", "post", "delete", "options", "head", "patch", "trace"];
    /// `docs/openapi.json`.
    const COMMITTED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/openapi.json");

    fn document() -> Value {
        serde_json::to_value(openapi()).unwrap()
    }

    /// Every operation of the document as (METHOD, path).
    fn documented(doc: &Value) -> BTreeSet<(String, String)> {
        let mut operations = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for method in METHODS {
                if item.get(method).is_some() {
                    operations.insert((method.to_uppercase(), path.clone()));
                }
            }
        }
        operations
    }

    fn operation<'a>(doc: &'a Value, method: &str, path: &str) -> &'a Value {
        &doc["paths"][path][method.to_lowercase()]
    }

    /// `path` with each `{name}` replaced by the example the document gives that parameter.
    fn example_uri(doc: &Value, method: &str, path: &str) -> String {
        let mut uri = path.to_owned();
        let parameters = operation(doc, method, path)["parameters"].as_array().cloned();
        for parameter in parameters.unwrap_or_default() {
            if parameter["in"] != "path" {
                continue;
            }
            let name = parameter["name"].as_str().unwrap();
            let example = match &parameter["example"] {
                Value::String(text) => text.clone(),
                Value::Number(n) => n.to_string(),
                other => panic!("{method} {path}: path parameter {name} has no example ({other})"),
            };
            uri = uri.replace(&format!("{{{name}}}"), &example);
        }
        assert!(!uri.contains('{'), "{method} {path}: a path parameter is not documented");
        uri
    }

    /// The real router over an empty ledger and a fake runtime, with `access`.
    struct Node {
        router: Router,
        _ledger: tradeloop_ledger::Ledger,
        _dir: tempfile::TempDir,
    }

    fn node(access: Access) -> Node {
        let (dir, ledger) = empty_ledger().unwrap();
        let limits = ApiLimits::default();
        let (commands, receiver) = mpsc::channel(limits.command_channel);
        let (commits, _) = broadcast::channel(16);
        tokio::spawn(run_fake_runtime(FakeRuntime::accept_all(false), receiver, commits.clone()));
        let shared = ApiShared { access, ..ApiShared::open() };
        let router = router_with_shared(commands, commits, ledger.view(), limits, shared);
        Node { router, _ledger: ledger, _dir: dir }
    }

    /// Status, content type and (unless it is a stream) JSON body of one request.
    async fn call(
        router: &Router,
        method: &str,
        uri: &str,
        token: Option<&str>,
    ) -> (StatusCode, String, Value) {
        let mut request = Request::builder().method(method).uri(uri);
        if let Some(token) = token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let request = request.body(Body::empty()).unwrap();
        let response =
            tokio::time::timeout(DEADLINE, router.clone().oneshot(request)).await.unwrap().unwrap();
        let status = response.status();
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        // A stream never ends; its body is not read.
        if content_type == "text/event-stream" || !content_type.contains("json") {
            return (status, content_type, Value::Null);
        }
        let bytes =
            tokio::time::timeout(DEADLINE, axum::body::to_bytes(response.into_body(), usize::MAX))
                .await
                .unwrap()
                .unwrap();
        (status, content_type, serde_json::from_slice(&bytes).unwrap())
    }

    /// Documented → served: each documented operation, asked with its examples, is answered by
    /// its route (not by the fallback, and not with 405), with a status and content type the
    /// document lists for it.
    #[tokio::test]
    async fn every_documented_operation_is_served_as_documented() {
        let doc = document();
        let node = node(Access::open());
        let operations = documented(&doc);
        assert!(operations.len() >= 13, "{operations:?}");
        for (method, path) in &operations {
            let uri = example_uri(&doc, method, path);
            let (status, content_type, json) = call(&node.router, method, &uri, None).await;
            let at = format!("{method} {uri} (documented as {path})");
            assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{at}: not served with {method}");
            assert!(
                !(status == StatusCode::NOT_FOUND && json["code"] == "NOT_FOUND"),
                "{at}: answered by the fallback ({json}): the router does not serve it"
            );
            let response = &operation(&doc, method, path)["responses"][status.as_str()];
            assert!(response.is_object(), "{at}: answered {status}, which is not documented");
            let types = response["content"].as_object().unwrap();
            assert!(
                types.contains_key(&content_type),
                "{at}: answered {status} as {content_type}, documented as {:?}",
                types.keys().collect::<Vec<_>>()
            );
        }
    }

    /// Served → documented: the router's own record of its routes is the document's set of
    /// operations.
    #[test]
    fn every_served_route_is_documented() {
        let served = routes().served;
        let set: BTreeSet<(String, String)> =
            served.iter().map(|(m, p)| (m.as_str().to_owned(), (*p).to_owned())).collect();
        assert_eq!(set.len(), served.len(), "a route is added twice: {served:?}");
        let doc = documented(&document());
        let undocumented: Vec<_> = set.difference(&doc).collect();
        let unserved: Vec<_> = doc.difference(&set).collect();
        assert!(
            undocumented.is_empty() && unserved.is_empty(),
            "served but not in the OpenAPI document: {undocumented:?}; documented but not \
             served: {unserved:?}"
        );
    }

    /// Each operation names one scope, the one the token check asks for: a token with only that
    /// scope passes, a token with every other scope is refused with 403, none with 401.
    #[tokio::test]
    async fn each_operation_needs_the_scope_it_documents() {
        let all = [Scope::Read, Scope::Submit, Scope::Metrics];
        let mut tokens = Vec::new();
        for scope in all {
            tokens.push(TokenEntry {
                name: format!("only-{}", scope.as_str()),
                sha256: Hash::sha256(format!("only-{}", scope.as_str()).as_bytes()),
                scopes: vec![scope],
            });
            tokens.push(TokenEntry {
                name: format!("not-{}", scope.as_str()),
                sha256: Hash::sha256(format!("not-{}", scope.as_str()).as_bytes()),
                scopes: all.into_iter().filter(|s| *s != scope).collect(),
            });
        }
        let node = node(Access { tokens });
        let doc = document();
        let schemes = doc["components"]["securitySchemes"].as_object().unwrap();
        assert_eq!(schemes[BEARER]["type"], "http");
        assert_eq!(schemes[BEARER]["scheme"], "bearer");
        for (method, path) in documented(&doc) {
            let op = operation(&doc, &method, &path);
            let at = format!("{method} {path}");
            let security = op["security"].as_array().unwrap();
            assert_eq!(security.len(), 1, "{at}: {security:?}");
            let scopes = security[0][BEARER].as_array().unwrap();
            assert_eq!(scopes.len(), 1, "{at}: {scopes:?}");
            let scope = Scope::parse(scopes[0].as_str().unwrap()).unwrap();
            let uri = example_uri(&doc, &method, &path);
            let only = format!("only-{}", scope.as_str());
            let (status, _, json) = call(&node.router, &method, &uri, Some(&only)).await;
            assert!(
                status != StatusCode::UNAUTHORIZED && status != StatusCode::FORBIDDEN,
                "{at}: documented scope {} is refused: {json}",
                scope.as_str()
            );
            let not = format!("not-{}", scope.as_str());
            let (status, _, json) = call(&node.router, &method, &uri, Some(&not)).await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{at}: passes without {}", scope.as_str());
            assert_eq!(json["code"], "FORBIDDEN");
            let (status, _, _) = call(&node.router, &method, &uri, None).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{at}");
            for refused in ["401", "403"] {
                assert!(
                    op["responses"][refused]["content"]["application/problem+json"].is_object(),
                    "{at}: {refused} is not documented"
                );
            }
        }
    }

    /// `docs/openapi.json` is the document the code makes; `UPDATE_OPENAPI=1` rewrites it.
    #[test]
    fn the_committed_document_is_current() {
        let current = openapi_pretty_json().unwrap();
        if std::env::var_os("UPDATE_OPENAPI").is_some_and(|v| v == "1") {
            std::fs::write(COMMITTED, &current).unwrap();
            return;
        }
        let committed = std::fs::read_to_string(COMMITTED).unwrap_or_default();
        assert!(
            committed == current,
            "docs/openapi.json is not the document the API makes: regenerate it with \
             `UPDATE_OPENAPI=1 cargo test -p tradeloop-node --lib openapi`, check it with \
             scripts/openapi-validate and commit it"
        );
    }

    /// `GET /v1/openapi.json` answers the node's own document: the committed one on a node
    /// with tokens and the default limits; on a node without tokens, one whose every operation
    /// also takes no credentials (`{}`), and which says so.
    #[tokio::test]
    async fn the_router_serves_the_nodes_document() {
        let token = TokenEntry {
            name: "reader".into(),
            sha256: Hash::sha256(b"reader"),
            scopes: vec![Scope::Read],
        };
        let guarded = node(Access { tokens: vec![token] });
        let (status, content_type, json) =
            call(&guarded.router, "GET", "/v1/openapi.json", Some("reader")).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(content_type, "application/json");
        assert_eq!(json, document());

        let open = node(Access::open());
        let (status, _, json) = call(&open.router, "GET", "/v1/openapi.json", None).await;
        assert_eq!(status, StatusCode::OK);
        let expected = super::document(&ApiLimits::default(), Tokens::NoneConfigured);
        assert_eq!(json, serde_json::to_value(expected).unwrap());
        assert!(json["info"]["description"].as_str().unwrap().ends_with(OPEN_NODE_NOTE));
        for (method, path) in documented(&json) {
            let security = operation(&json, &method, &path)["security"].as_array().unwrap();
            assert_eq!(security.len(), 2, "{method} {path}: {security:?}");
            assert_eq!(security[0], serde_json::json!({}), "{method} {path}");
            assert!(security[1][BEARER].is_array(), "{method} {path}");
        }
    }

    /// The submit body's array is bounded by the node's own `max_events_per_request`, from 1.
    #[test]
    fn the_document_states_the_nodes_event_bound() {
        let limits = ApiLimits { max_events_per_request: 7, ..ApiLimits::default() };
        let doc = serde_json::to_value(super::document(&limits, Tokens::Required)).unwrap();
        let body = &doc["components"]["schemas"]["SubmitBody"]["oneOf"];
        let array = body.as_array().unwrap().iter().find(|s| s["type"] == "array").unwrap();
        assert_eq!(array["minItems"], 1);
        assert_eq!(array["maxItems"], 7);
        let envelope = &doc["components"]["schemas"]["Envelope"];
        assert_eq!(envelope["additionalProperties"], false);
        assert_eq!(envelope["properties"]["signature"]["pattern"], "^[0-9a-fA-F]{128}$");
    }

    /// Every integer a request can carry states the range the node reads, 0 or 1 to
    /// `u64::MAX`, and no `int64` format (whose implied bound is 2^63 - 1).
    #[test]
    fn every_integer_parameter_states_its_range() {
        fn integers<'a>(schema: &'a Value, out: &mut Vec<&'a Value>) {
            if schema["type"] == "integer" {
                out.push(schema);
            }
            if let Some(properties) = schema["properties"].as_object() {
                properties.values().for_each(|s| integers(s, out));
            }
            for key in ["anyOf", "oneOf", "allOf"] {
                if let Some(items) = schema[key].as_array() {
                    items.iter().for_each(|s| integers(s, out));
                }
            }
        }
        let doc = document();
        let mut found = Vec::new();
        for (method, path) in documented(&doc) {
            let parameters = operation(&doc, &method, &path)["parameters"].as_array().cloned();
            for parameter in parameters.unwrap_or_default() {
                let mut schemas = Vec::new();
                integers(&parameter["schema"], &mut schemas);
                for schema in schemas {
                    let at = format!("{method} {path} {}", parameter["name"]);
                    assert!(schema["minimum"].as_u64().is_some_and(|m| m <= 1), "{at}: {schema}");
                    assert_eq!(schema["maximum"].as_u64(), Some(u64::MAX), "{at}: {schema}");
                    assert!(schema.get("format").is_none(), "{at}: {schema}");
                    found.push(at);
                }
            }
        }
        // from and limit of the blocks, height, offset and limit of a trace, from of the
        // stream, timeout_ms of a submit.
        assert_eq!(found.len(), 7, "{found:?}");
    }

    /// OpenAPI 3.1; hashes are hex strings; an envelope's body is an object; the stream is
    /// `text/event-stream`; every operation has its problem answers.
    #[test]
    fn the_document_has_the_shapes_the_api_sends() {
        let doc = document();
        assert_eq!(doc["openapi"], "3.1.0");
        let schemas = &doc["components"]["schemas"];
        let hex = |schema: &str, field: &str| {
            let property = &schemas[schema]["properties"][field];
            let kind = &property["type"];
            assert!(
                *kind == "string" || *kind == serde_json::json!(["string", "null"]),
                "{schema}.{field} is not a string: {property}"
            );
            assert_eq!(property["pattern"], "^[0-9a-f]{64}$", "{schema}.{field}");
        };
        for (schema, field) in [
            ("EventView", "id"),
            ("EventView", "block_hash"),
            ("HeaderView", "hash"),
            ("HeaderView", "prev_hash"),
            ("HeaderView", "events_root"),
            ("HeaderView", "app_hash"),
            ("HeaderView", "validators_hash"),
            ("ParticipantsView", "genesis_hash"),
            ("NodeStatus", "genesis_hash"),
            ("NodeStatus", "tip_hash"),
        ] {
            hex(schema, field);
        }
        // Every schema with the hash pattern, wherever it is (the EventResult variants, the
        // path parameters), is a string.
        fn hashes(value: &Value, found: &mut usize) {
            match value {
                Value::Object(map) => {
                    if map.get("pattern").is_some_and(|p| p == "^[0-9a-f]{64}$") {
                        *found += 1;
                        assert_eq!(map["type"], "string", "{value}");
                    }
                    map.values().for_each(|v| hashes(v, found));
                }
                Value::Array(items) => items.iter().for_each(|v| hashes(v, found)),
                _ => {}
            }
        }
        let mut found = 0;
        hashes(&doc, &mut found);
        assert!(found >= 10, "{found} hashes");
        assert_eq!(schemas["Envelope"]["properties"]["body"]["type"], "object");
        let stream = &doc["paths"]["/v1/stream"]["get"]["responses"]["200"]["content"];
        assert!(stream["text/event-stream"].is_object(), "{stream}");
        for (method, path) in documented(&doc) {
            let responses = operation(&doc, &method, &path)["responses"].as_object().unwrap();
            for (status, response) in responses {
                if status.starts_with('4') || status.starts_with('5') {
                    let problem = &response["content"]["application/problem+json"]["schema"];
                    assert_eq!(problem["$ref"], "#/components/schemas/Problem", "{method} {path}");
                }
            }
            assert!(responses.contains_key("500") && responses.contains_key("503"));
        }
    }

    /// The `Problem` schema has the members a problem answer has.
    #[tokio::test]
    async fn the_problem_schema_has_the_members_of_a_problem() {
        let doc = document();
        let schema = &doc["components"]["schemas"]["Problem"];
        let properties: BTreeSet<&str> =
            schema["properties"].as_object().unwrap().keys().map(String::as_str).collect();
        let required: BTreeSet<&str> =
            schema["required"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
        let body = |problem: Problem| async {
            let response = problem.into_response();
            let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
            serde_json::from_slice::<Value>(&bytes).unwrap()
        };
        let plain = body(Problem::new(ProblemCode::NotFound, "no")).await;
        let plain: BTreeSet<&str> = plain.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(plain, required);
        let full = body(
            Problem::new(ProblemCode::MempoolFull, "full")
                .retry_after_ms(1500)
                .results(serde_json::json!([])),
        )
        .await;
        let full: BTreeSet<&str> = full.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(full, properties);
    }
}
