//! `tradeloop reindex`.

use std::process::ExitCode;

use anyhow::{Context, Result};
use tradeloop_ledger::Ledger;

use super::{load_genesis, ChainArgs};
use crate::output::Out;

pub fn reindex(chain: &ChainArgs) -> Result<ExitCode> {
    let genesis = load_genesis(&chain.genesis)?;
    let ledger = Ledger::reindex(&chain.data_dir, genesis)
        .context("reindex failed; the block log itself may be damaged (run `tradeloop verify`)")?;
    writeln!(
        Out,
        "index rebuilt from the block log: {} blocks, tip {}",
        ledger.tip().height,
        ledger.tip().hash
    )?;
    Ok(ExitCode::SUCCESS)
}
