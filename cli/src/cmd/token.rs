//! `tradeloop token new`: a bearer token for a node's HTTP API (docs/api.md, "Access").
//!
//! The token is printed once, for the system that will call the API; the node keeps only its
//! SHA-256, in the `[[api.tokens]]` entry printed beside it.

use std::process::ExitCode;

use anyhow::{bail, Result};
use clap::Subcommand;
use serde_json::json;
use tradeloop_node::api::auth::{new_token, Scope};

use crate::output::Out;

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a random token; print it once, and the `[[api.tokens]]` entry (its SHA-256 and
    /// scopes) to add to node.toml.
    New {
        /// A name for the operator and the node's logs, e.g. `erp` (1 to 64 characters).
        #[arg(long)]
        name: String,
        /// What it may do, comma-separated: read (every GET under /v1), submit (POST
        /// /v1/events), metrics (GET /metrics).
        #[arg(long, value_delimiter = ',', required = true)]
        scopes: Vec<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(command: TokenCommand) -> Result<ExitCode> {
    let TokenCommand::New { name, scopes, json } = command;
    if name.is_empty() || name.chars().count() > 64 || name.chars().any(char::is_control) {
        bail!("--name must be 1 to 64 characters with no control characters, e.g. erp");
    }
    let mut parsed = Vec::new();
    for s in &scopes {
        match Scope::parse(s.trim()) {
            Some(scope) if !parsed.contains(&scope) => parsed.push(scope),
            Some(_) => {}
            None => bail!("--scopes: `{s}` is not a scope; the scopes are read, submit, metrics"),
        }
    }
    let token = new_token()?;
    let sha256 = tradeloop_crypto::Hash::sha256(token.as_bytes()).to_hex();
    let names: Vec<&str> = parsed.iter().map(Scope::as_str).collect();
    if json {
        writeln!(
            Out,
            "{}",
            json!({"name": name, "token": token, "sha256": sha256, "scopes": names})
        )?;
        return Ok(ExitCode::SUCCESS);
    }
    let toml_name = toml_string(&name);
    let toml_scopes: Vec<String> = names.iter().map(|s| format!("\"{s}\"")).collect();
    writeln!(Out, "token (give it to the system that calls the API; it is not stored anywhere):")?;
    writeln!(Out, "  {token}")?;
    writeln!(Out, "add to the node's node.toml, then restart the node:")?;
    writeln!(Out, "[[api.tokens]]")?;
    writeln!(Out, "name = {toml_name}")?;
    writeln!(Out, "sha256 = \"{sha256}\"")?;
    writeln!(Out, "scopes = [{}]", toml_scopes.join(", "))?;
    Ok(ExitCode::SUCCESS)
}

/// `text` as a TOML basic string.
fn toml_string(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
