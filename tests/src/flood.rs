//! Connection floods from strangers: TCP connections opened at a fixed rate to a node's p2p
//! port, each sending a few bytes that are no Noise handshake and then closing, as a scanner or
//! a misconfigured client would. (Strangers that complete the handshake with keys not in the
//! genesis are the cluster tests' job: they are refused once the key is known.)

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long one connection attempt may take before it counts as refused.
pub const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);

/// A running flood.
#[derive(Debug)]
pub struct Flood {
    stop: Arc<AtomicBool>,
    attempts: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

impl Flood {
    /// Opens `per_second` connections a second to `target` until stopped.
    pub fn start(target: SocketAddr, per_second: u32) -> Flood {
        let stop = Arc::new(AtomicBool::new(false));
        let attempts = Arc::new(AtomicU64::new(0));
        let (s, a) = (Arc::clone(&stop), Arc::clone(&attempts));
        let thread = std::thread::spawn(move || flood(target, per_second, &s, &a));
        Flood { stop, attempts, thread: Some(thread) }
    }

    /// Stops it; how many connections were attempted.
    pub fn stop(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        self.attempts.load(Ordering::Relaxed)
    }
}

impl Drop for Flood {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn flood(target: SocketAddr, per_second: u32, stop: &AtomicBool, attempts: &AtomicU64) {
    let interval = Duration::from_secs(1) / per_second.max(1);
    let started = Instant::now();
    let mut sent = 0u32;
    while !stop.load(Ordering::Relaxed) {
        if let Ok(mut stream) = TcpStream::connect_timeout(&target, CONNECT_TIMEOUT) {
            let _ = stream.write_all(b"\x00\x13/multistream/1.0.0\nGET / HTTP/1.1\r\n\r\n");
        }
        attempts.fetch_add(1, Ordering::Relaxed);
        sent = sent.saturating_add(1);
        // Keep to the rate: sleep until this attempt's slot has passed.
        let due = started + interval * sent;
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
}

/// Open file descriptors of process `pid` (sockets included), from /proc.
pub fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map(Iterator::count).unwrap_or(0)
}
