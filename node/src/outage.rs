//! A node whose data dir cannot be written (a full disk, a failing device) stops before
//! anything is half done ([`crate::runtime::NodeError::is_storage`]) and waits here for the disk:
//! its API address answers every request `503` with the reason (`GET /v1/status` included, with
//! a `storage` field), and every [`PROBE_INTERVAL`] it tries to write and sync
//! [`PROBE_BYTES`] in the data dir. Once that works the node starts again, which re-reads every
//! durable file (the block log's torn tail cut, the index caught up from the log, the WAL and
//! the sign-state re-read) and catches up with its peers by sync.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use axum::http::StatusCode;
use axum::response::IntoResponse;
use tokio::sync::watch;

use crate::runtime::NodeError;

/// How often the data dir is tried while it cannot be written.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(2);
/// How much a probe writes: room for the next blocks and WAL records, not just one byte.
pub const PROBE_BYTES: usize = 1024 * 1024;
/// The probe's file in the data dir (removed after each try).
pub const PROBE_FILE: &str = ".storage-probe";

/// How the wait ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Waited {
    /// The data dir takes writes again: start the node.
    Writable,
    /// The node was told to stop.
    Stopped,
}

/// Answers on `api` with the reason until the data dir takes writes or `stop` turns true.
pub async fn wait_for_storage(
    api: SocketAddr,
    data_dir: &Path,
    reason: String,
    mut stop: watch::Receiver<bool>,
) -> Result<Waited, NodeError> {
    tracing::error!(
        "waiting for the data dir {} to take writes again ({reason}); free space there, the \
         node starts again by itself",
        data_dir.display()
    );
    let listener = tokio::net::TcpListener::bind(api).await.map_err(|source| NodeError::Io {
        what: format!("cannot listen on api.listen {api} while waiting for the disk"),
        source,
    })?;
    let body = serde_json::json!({
        "type": "about:blank",
        "title": "storage failed",
        "status": 503,
        "code": "STORAGE_FAILED",
        "storage": reason,
        "detail": format!(
            "this node cannot write its data dir ({reason}); nothing is lost, and it starts again \
             by itself once space is freed"
        ),
    });
    let app = axum::Router::new().fallback(move || {
        let body = body.clone();
        async move { (StatusCode::SERVICE_UNAVAILABLE, axum::Json(body)).into_response() }
    });
    let (done_tx, mut done_rx) = watch::channel(false);
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = done_rx.wait_for(|d| *d).await;
            })
            .await;
    });
    let waited = probe_until_writable(data_dir.to_path_buf(), &mut stop).await;
    let _ = done_tx.send(true);
    let _ = server.await;
    if waited == Waited::Writable {
        tracing::info!("the data dir takes writes again: starting the node");
    }
    Ok(waited)
}

async fn probe_until_writable(data_dir: PathBuf, stop: &mut watch::Receiver<bool>) -> Waited {
    let mut tick = tokio::time::interval(PROBE_INTERVAL);
    loop {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return Waited::Stopped,
            _ = tick.tick() => {}
        }
        let dir = data_dir.clone();
        let probe = tokio::task::spawn_blocking(move || write_probe(&dir)).await;
        if matches!(probe, Ok(Ok(()))) {
            return Waited::Writable;
        }
    }
}

fn write_probe(data_dir: &Path) -> std::io::Result<()> {
    use std::io::Write;
    let path = data_dir.join(PROBE_FILE);
    let written = (|| {
        let mut file = std::fs::File::create(&path)?;
        file.write_all(&vec![0u8; PROBE_BYTES])?;
        file.sync_all()
    })();
    let _ = std::fs::remove_file(&path);
    written
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn it_answers_503_with_the_reason_and_ends_when_the_dir_is_writable() {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let (_stop_tx, stop) = watch::channel(false);
        // The dir is writable: the wait ends at the first probe.
        let waited = wait_for_storage(port, dir.path(), "disk full".into(), stop).await.unwrap();
        assert_eq!(waited, Waited::Writable);
        assert!(!dir.path().join(PROBE_FILE).exists());
    }

    #[tokio::test]
    async fn a_stop_ends_the_wait_for_a_dir_that_is_not_writable() {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let (stop_tx, stop) = watch::channel(false);
        let missing = std::path::PathBuf::from("/nonexistent/tradeloop-data");
        let wait = tokio::spawn(async move {
            wait_for_storage(port, &missing, "No space left on device".into(), stop).await
        });
        // The API answers 503 with the reason while it waits.
        let mut answer = None;
        for _ in 0..100 {
            if let Ok(mut s) = tokio::net::TcpStream::connect(port).await {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                s.write_all(b"GET /v1/status HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
                    .await
                    .unwrap();
                let mut text = String::new();
                s.read_to_string(&mut text).await.unwrap();
                answer = Some(text);
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let answer = answer.expect("the API answered");
        assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
        assert!(answer.contains("\"storage\":\"No space left on device\""), "{answer}");
        stop_tx.send(true).unwrap();
        assert_eq!(wait.await.unwrap().unwrap(), Waited::Stopped);
    }
}
