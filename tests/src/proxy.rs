//! A fault-injecting TCP proxy for one directed link between two nodes.
//!
//! Every p2p connection a node opens to a peer goes through the [`LinkProxy`] of that ordered
//! pair (the harness writes the proxies' addresses into each node's bootstrap list, and nodes
//! dial no address they learn from peers). The harness then cuts, heals and slows links while
//! the processes keep running:
//!
//! - **cut**: the proxy stops moving bytes either way on the link's connections, old and new,
//!   as a black-holed route does: TCP stays up, the peers' sends fill their buffers, nothing
//!   arrives. Healing lets the held bytes through in order, as TCP's retransmissions would.
//! - **delay**: each chunk read is written after `base ± jitter` (a seeded generator), never
//!   before a chunk read earlier, so a stream keeps its order.
//!
//! Threads, not async: the proxy must keep working while a test thread blocks on a node.

use std::collections::VecDeque;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};

/// Largest chunk read from one side at a time.
pub const CHUNK_BYTES: usize = 64 * 1024;
/// Most chunks waiting for their delivery time on one direction of one connection; a reader
/// that finds the queue full waits, so a slow link pushes back on its sender as TCP does.
pub const MAX_QUEUED_CHUNKS: usize = 256;
/// How often a blocked reader or writer looks at the link's state and the stop flag.
const POLL: Duration = Duration::from_millis(20);

/// The fault applied to a link.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkFault {
    /// Bytes move at once.
    None,
    /// No byte moves (a black hole); connections stay open.
    Cut,
    /// Every chunk waits `base ± jitter`.
    Delay {
        /// Mean added delay.
        base: Duration,
        /// Largest deviation from `base`, uniform.
        jitter: Duration,
    },
}

#[derive(Debug)]
struct LinkState {
    fault: Mutex<LinkFault>,
    changed: Condvar,
    stop: AtomicBool,
    seed: Mutex<rand::rngs::StdRng>,
}

impl LinkState {
    fn fault(&self) -> LinkFault {
        *self.fault.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Blocks while the link is cut (or until stopped); the fault in force after.
    fn wait_uncut(&self) -> LinkFault {
        let mut fault = self.fault.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        while *fault == LinkFault::Cut && !self.stopped() {
            fault = self
                .changed
                .wait_timeout(fault, POLL)
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .0;
        }
        *fault
    }

    fn delay(&self) -> Duration {
        match self.fault() {
            LinkFault::Delay { base, jitter } if !jitter.is_zero() => {
                let mut rng = self.seed.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                let micros = u64::try_from(jitter.as_micros()).unwrap_or(u64::MAX / 2);
                let spread = rng.random_range(0..=2 * micros);
                (base + Duration::from_micros(spread)).saturating_sub(jitter)
            }
            LinkFault::Delay { base, .. } => base,
            LinkFault::None | LinkFault::Cut => Duration::ZERO,
        }
    }
}

/// One directed link's proxy: listens on a loopback port and forwards every connection to
/// `target`. Dropping it stops it and closes its connections.
#[derive(Debug)]
pub struct LinkProxy {
    /// Where dialers connect.
    pub addr: SocketAddr,
    state: Arc<LinkState>,
    acceptor: Option<JoinHandle<()>>,
}

impl LinkProxy {
    /// A proxy to `target` on a free loopback port; `seed` drives its delays.
    pub fn start(target: SocketAddr, seed: u64) -> std::io::Result<LinkProxy> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let state = Arc::new(LinkState {
            fault: Mutex::new(LinkFault::None),
            changed: Condvar::new(),
            stop: AtomicBool::new(false),
            seed: Mutex::new(rand::rngs::StdRng::seed_from_u64(seed)),
        });
        let shared = Arc::clone(&state);
        let acceptor = std::thread::Builder::new()
            .name(format!("proxy-{}", addr.port()))
            .spawn(move || accept_loop(&listener, target, &shared))?;
        Ok(LinkProxy { addr, state, acceptor: Some(acceptor) })
    }

    /// Applies `fault` from now on, to the link's open connections too.
    pub fn set(&self, fault: LinkFault) {
        *self.state.fault.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = fault;
        self.state.changed.notify_all();
    }

    /// The fault in force.
    pub fn fault(&self) -> LinkFault {
        self.state.fault()
    }
}

impl Drop for LinkProxy {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::Relaxed);
        self.state.changed.notify_all();
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

fn accept_loop(listener: &TcpListener, target: SocketAddr, state: &Arc<LinkState>) {
    let mut pumps = Vec::new();
    while !state.stopped() {
        match listener.accept() {
            Ok((inbound, _)) => {
                if let Ok(outbound) = TcpStream::connect_timeout(&target, Duration::from_secs(2)) {
                    pumps.extend(connect(inbound, outbound, state));
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => std::thread::sleep(POLL),
            Err(_) => std::thread::sleep(POLL),
        }
        pumps.retain(|p: &JoinHandle<()>| !p.is_finished());
    }
    for pump in pumps {
        let _ = pump.join();
    }
}

/// Starts the two directions of one proxied connection; their threads.
fn connect(a: TcpStream, b: TcpStream, state: &Arc<LinkState>) -> Vec<JoinHandle<()>> {
    let mut threads = Vec::new();
    for (from, to) in [(&a, &b), (&b, &a)] {
        let (Ok(from), Ok(to)) = (from.try_clone(), to.try_clone()) else { continue };
        let _ = from.set_nodelay(true);
        let _ = to.set_nodelay(true);
        let _ = from.set_read_timeout(Some(POLL));
        threads.extend(direction(from, to, Arc::clone(state)));
    }
    threads
}

/// A chunk and the instant it may be written.
type Queue = Arc<(Mutex<VecDeque<(Instant, Vec<u8>)>>, Condvar)>;

fn direction(from: TcpStream, to: TcpStream, state: Arc<LinkState>) -> Vec<JoinHandle<()>> {
    let queue: Queue = Arc::new((Mutex::new(VecDeque::new()), Condvar::new()));
    let done = Arc::new(AtomicBool::new(false));
    let reader = {
        let (queue, state, done) = (Arc::clone(&queue), Arc::clone(&state), Arc::clone(&done));
        std::thread::spawn(move || read_side(from, &queue, &state, &done))
    };
    let writer = std::thread::spawn(move || write_side(to, &queue, &state, &done));
    vec![reader, writer]
}

fn read_side(mut from: TcpStream, queue: &Queue, state: &LinkState, done: &AtomicBool) {
    let mut buf = vec![0u8; CHUNK_BYTES];
    let mut last_due = Instant::now();
    while !state.stopped() {
        if state.wait_uncut() == LinkFault::Cut {
            continue;
        }
        match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                last_due = last_due.max(Instant::now() + state.delay());
                let (lock, ready) = &**queue;
                let mut q = lock.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                while q.len() >= MAX_QUEUED_CHUNKS && !state.stopped() {
                    q = ready
                        .wait_timeout(q, POLL)
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .0;
                }
                q.push_back((last_due, buf[..n].to_vec()));
                ready.notify_all();
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => break,
        }
    }
    done.store(true, Ordering::Relaxed);
    let _ = from.shutdown(Shutdown::Read);
    queue.1.notify_all();
}

fn write_side(mut to: TcpStream, queue: &Queue, state: &LinkState, done: &AtomicBool) {
    let (lock, ready) = &**queue;
    loop {
        let next = {
            let mut q = lock.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            loop {
                if state.stopped() {
                    return;
                }
                match q.front() {
                    Some((due, _)) if *due <= Instant::now() => break q.pop_front(),
                    Some((due, _)) => {
                        let wait = due.saturating_duration_since(Instant::now()).min(POLL);
                        q = ready
                            .wait_timeout(q, wait)
                            .unwrap_or_else(std::sync::PoisonError::into_inner)
                            .0;
                    }
                    None if done.load(Ordering::Relaxed) => break None,
                    None => {
                        q = ready
                            .wait_timeout(q, POLL)
                            .unwrap_or_else(std::sync::PoisonError::into_inner)
                            .0;
                    }
                }
            }
        };
        ready.notify_all();
        let Some((_, chunk)) = next else { break };
        if state.wait_uncut() == LinkFault::Cut || to.write_all(&chunk).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn echo_server() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for mut stream in listener.incoming().flatten() {
                std::thread::spawn(move || {
                    let mut buf = [0u8; 1024];
                    while let Ok(n) = stream.read(&mut buf) {
                        if n == 0 || stream.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                });
            }
        });
        addr
    }

    fn round_trip(stream: &mut TcpStream, msg: &[u8]) -> std::io::Result<Vec<u8>> {
        stream.write_all(msg)?;
        let mut back = vec![0u8; msg.len()];
        stream.read_exact(&mut back)?;
        Ok(back)
    }

    #[test]
    fn a_cut_link_holds_bytes_and_healing_delivers_them_in_order() {
        let proxy = LinkProxy::start(echo_server(), 1).unwrap();
        let mut stream = TcpStream::connect(proxy.addr).unwrap();
        stream.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
        assert_eq!(round_trip(&mut stream, b"open").unwrap(), b"open");

        proxy.set(LinkFault::Cut);
        let held = round_trip(&mut stream, b"held");
        assert!(held.is_err(), "a cut link delivered {held:?}");

        proxy.set(LinkFault::None);
        stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut back = [0u8; 4];
        stream.read_exact(&mut back).unwrap();
        assert_eq!(&back, b"held");
        assert_eq!(round_trip(&mut stream, b"again").unwrap(), b"again");
    }

    #[test]
    fn a_delayed_link_delays_each_way_and_keeps_the_order() {
        let proxy = LinkProxy::start(echo_server(), 7).unwrap();
        proxy.set(LinkFault::Delay {
            base: Duration::from_millis(100),
            jitter: Duration::from_millis(50),
        });
        let mut stream = TcpStream::connect(proxy.addr).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let started = Instant::now();
        assert_eq!(round_trip(&mut stream, b"slow").unwrap(), b"slow");
        // Two crossings of at least base - jitter each.
        assert!(started.elapsed() >= Duration::from_millis(100), "{:?}", started.elapsed());
        for i in 0..20u8 {
            stream.write_all(&[i]).unwrap();
        }
        let mut back = [0u8; 20];
        stream.read_exact(&mut back).unwrap();
        assert_eq!(back.to_vec(), (0..20u8).collect::<Vec<_>>());
    }
}
