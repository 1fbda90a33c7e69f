//! `tradeloop keygen`.

use std::path::Path;
use std::process::ExitCode;

use crate::output::Out;
use anyhow::Result;
use serde_json::json;
use tradeloop_crypto::keyfile::write_key_file;
use tradeloop_crypto::SigningKey;

pub fn keygen(out: &Path, json: bool) -> Result<ExitCode> {
    let key = SigningKey::generate()?;
    write_key_file(out, &key)?;
    if json {
        writeln!(Out, "{}", json!({"public_key": key.public_key().to_hex(), "file": out}))?;
    } else {
        writeln!(Out, "{}", key.public_key().to_hex())?;
    }
    Ok(ExitCode::SUCCESS)
}
