//! `tradeloop node`: run one member node from its `node.toml`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;
use tradeloop_node::config::{LogFormat, LogSection, NodeConfig};

#[derive(Debug, Args)]
pub struct NodeArgs {
    /// The node's configuration file (docs/operations.md, "Node configuration").
    #[arg(long)]
    pub config: PathBuf,
    /// Also stop when standard input reaches its end (a supervisor such as `devnet run` holds
    /// it open; if the supervisor dies, its nodes stop with it).
    #[arg(long, hide = true)]
    pub stop_on_stdin_eof: bool,
}

pub fn run(args: NodeArgs) -> Result<ExitCode> {
    let config = NodeConfig::load(&args.config)?;
    init_logging(&config.log);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("tradeloop-node")
        .build()
        .context("cannot start the async runtime")?;
    let stop_on_eof = args.stop_on_stdin_eof;
    runtime.block_on(async move {
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            tokio::select! {
                () = tradeloop_node::runtime::shutdown_signal() => {}
                () = stdin_eof(stop_on_eof) => {}
            }
            let _ = stop_tx.send(true);
        });
        run_until_stopped(config, stop_rx).await
    })?;
    Ok(ExitCode::SUCCESS)
}

/// Runs the node; when a write to its data dir fails (a full disk), waits until the dir takes
/// writes again and starts it again (docs/operations.md, "A full disk").
async fn run_until_stopped(
    config: NodeConfig,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Result<(), tradeloop_node::runtime::NodeError> {
    use tradeloop_node::outage::{wait_for_storage, Waited};
    loop {
        let mut stopped = stop.clone();
        let until_stopped = async move {
            let _ = stopped.wait_for(|s| *s).await;
        };
        match tradeloop_node::runtime::run(config.clone(), until_stopped, |_| {}).await {
            Err(e) if e.is_storage() => {
                let waited = wait_for_storage(
                    config.api.listen,
                    &config.data_dir,
                    e.to_string(),
                    stop.clone(),
                )
                .await?;
                if waited == Waited::Stopped {
                    return Ok(());
                }
            }
            other => return other,
        }
    }
}

async fn stdin_eof(enabled: bool) {
    if !enabled {
        return std::future::pending().await;
    }
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let mut sink = [0u8; 256];
        let mut stdin = std::io::stdin();
        while matches!(std::io::Read::read(&mut stdin, &mut sink), Ok(n) if n > 0) {}
        let _ = tx.send(());
    });
    let _ = rx.await;
}

/// Logs to stderr, as pretty lines or JSON; `RUST_LOG` overrides `[log] level`.
pub fn init_logging(log: &LogSection) {
    use tracing_subscriber::EnvFilter;
    let filter = std::env::var("RUST_LOG")
        .ok()
        .or_else(|| log.level.clone())
        .unwrap_or_else(|| "info,libp2p=warn".into());
    let filter = EnvFilter::try_new(&filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = match log.format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Pretty => builder.with_ansi(false).try_init(),
    };
}
