//! Bearer tokens (`Authorization: Bearer TOKEN`) with scopes.
//!
//! A member node serves its operator's own systems, and the ledger's content is confidential to
//! the members. The node keeps only the SHA-256 of each token (`[[api.tokens]]` in node.toml), so
//! its config reveals none; a presented token is hashed and compared with every configured hash
//! in constant time. Each token has scopes: `read` (every `GET` under `/v1`), `submit`
//! (`POST /v1/events`), `metrics` (`GET /metrics`). With no token configured (allowed only when
//! the API listens on a loopback address) everything is open.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;
use tradeloop_crypto::Hash;

use super::problem::{Problem, ProblemCode};

/// What a token may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    /// Every `GET` under `/v1`: status, events, proofs, blocks, traces, trades, participants, the
    /// stream, the OpenAPI document.
    Read,
    /// `POST /v1/events`.
    Submit,
    /// `GET /metrics`.
    Metrics,
}

impl Scope {
    /// The name used in node.toml.
    pub fn as_str(&self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Submit => "submit",
            Scope::Metrics => "metrics",
        }
    }

    /// Parses a name used in node.toml.
    pub fn parse(text: &str) -> Option<Scope> {
        match text {
            "read" => Some(Scope::Read),
            "submit" => Some(Scope::Submit),
            "metrics" => Some(Scope::Metrics),
            _ => None,
        }
    }
}

/// One configured token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenEntry {
    /// A name for logs and for the operator (e.g. `erp`).
    pub name: String,
    /// SHA-256 of the token's bytes.
    pub sha256: Hash,
    /// What it may do.
    pub scopes: Vec<Scope>,
}

/// Who may call the API.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Access {
    /// The tokens; empty means open (loopback only; the node's config check enforces that).
    pub tokens: Vec<TokenEntry>,
}

/// The scope a request needs, by method and path.
fn needed(method: &Method, path: &str) -> Scope {
    if path == "/metrics" {
        Scope::Metrics
    } else if method == Method::POST {
        Scope::Submit
    } else {
        Scope::Read
    }
}

impl Access {
    /// Everything open (no tokens).
    pub fn open() -> Access {
        Access::default()
    }

    /// The token entry whose hash matches `presented`, comparing every entry in constant time.
    fn find(&self, presented: &[u8]) -> Option<&TokenEntry> {
        let hash = Hash::sha256(presented);
        let mut found = None;
        for entry in &self.tokens {
            if bool::from(entry.sha256.0.ct_eq(&hash.0)) {
                found = Some(entry);
            }
        }
        found
    }

    /// Checks a request's `Authorization` header for `scope`.
    fn check(&self, authorization: Option<&HeaderValue>, scope: Scope) -> Result<(), Problem> {
        if self.tokens.is_empty() {
            return Ok(());
        }
        let Some(value) = authorization else {
            return Err(Problem::new(
                ProblemCode::Unauthorized,
                "this node requires a bearer token: send `Authorization: Bearer TOKEN` (the CLI \
                 takes --token or TRADELOOP_TOKEN); the node's operator creates tokens with \
                 `tradeloop token new`",
            ));
        };
        let token = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                Problem::new(
                    ProblemCode::Unauthorized,
                    "the Authorization header must be `Bearer TOKEN`",
                )
            })?;
        let entry = self.find(token.as_bytes()).ok_or_else(|| {
            Problem::new(
                ProblemCode::Unauthorized,
                "the bearer token is not one of this node's tokens (or was revoked); ask the \
                 node's operator for a token",
            )
        })?;
        if entry.scopes.contains(&scope) {
            Ok(())
        } else {
            let has: Vec<&str> = entry.scopes.iter().map(Scope::as_str).collect();
            Err(Problem::new(
                ProblemCode::Forbidden,
                format!(
                    "token `{}` has the scopes [{}]; this request needs `{}`: ask the node's \
                     operator for a token with it",
                    entry.name,
                    has.join(", "),
                    scope.as_str()
                ),
            ))
        }
    }
}

/// The middleware: refuses a request without a token of the scope it needs.
pub(super) async fn require(
    State(access): State<Arc<Access>>,
    request: Request,
    next: Next,
) -> Response {
    let scope = needed(request.method(), request.uri().path());
    match access.check(request.headers().get(header::AUTHORIZATION), scope) {
        Ok(()) => next.run(request).await,
        Err(problem) => {
            let mut response = problem.into_response();
            if response.status() == axum::http::StatusCode::UNAUTHORIZED {
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            response
        }
    }
}

/// A new random token: 32 bytes from the operating system, as 64 hex characters.
pub fn new_token() -> std::io::Result<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| std::io::Error::other(e.to_string()))?;
    Ok(hex::encode(bytes))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn access() -> Access {
        Access {
            tokens: vec![
                TokenEntry {
                    name: "erp".into(),
                    sha256: Hash::sha256(b"erp-secret"),
                    scopes: vec![Scope::Read, Scope::Submit],
                },
                TokenEntry {
                    name: "auditor".into(),
                    sha256: Hash::sha256(b"auditor-secret"),
                    scopes: vec![Scope::Read],
                },
            ],
        }
    }

    fn code(r: Result<(), Problem>) -> Option<&'static str> {
        r.err().map(|p| p.code().as_str())
    }

    #[test]
    fn a_token_is_checked_by_its_hash_and_its_scopes() {
        let a = access();
        let bearer = |t: &str| HeaderValue::from_str(&format!("Bearer {t}")).unwrap();
        assert_eq!(code(a.check(Some(&bearer("erp-secret")), Scope::Submit)), None);
        assert_eq!(code(a.check(Some(&bearer("auditor-secret")), Scope::Read)), None);
        assert_eq!(
            code(a.check(Some(&bearer("auditor-secret")), Scope::Submit)),
            Some("FORBIDDEN")
        );
        assert_eq!(code(a.check(Some(&bearer("erp-secret")), Scope::Metrics)), Some("FORBIDDEN"));
        assert_eq!(code(a.check(Some(&bearer("guess")), Scope::Read)), Some("UNAUTHORIZED"));
        assert_eq!(code(a.check(None, Scope::Read)), Some("UNAUTHORIZED"));
        let basic = HeaderValue::from_static("Basic ZXJwOnNlY3JldA==");
        assert_eq!(code(a.check(Some(&basic), Scope::Read)), Some("UNAUTHORIZED"));
        assert_eq!(code(Access::open().check(None, Scope::Submit)), None);
    }

    #[test]
    fn scopes_follow_method_and_path() {
        assert_eq!(needed(&Method::POST, "/v1/events"), Scope::Submit);
        assert_eq!(needed(&Method::GET, "/v1/events/ab"), Scope::Read);
        assert_eq!(needed(&Method::GET, "/v1/stream"), Scope::Read);
        assert_eq!(needed(&Method::GET, "/metrics"), Scope::Metrics);
        assert_eq!(needed(&Method::DELETE, "/v1/blocks"), Scope::Read);
    }

    #[test]
    fn new_tokens_are_64_hex_characters_and_differ() {
        let (a, b) = (new_token().unwrap(), new_token().unwrap());
        assert_eq!(a.len(), 64);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }
}
