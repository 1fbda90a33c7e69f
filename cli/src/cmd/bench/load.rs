//! The HTTP load generator of `bench api`: `clients` keep-alive HTTP/1.1 connections (hyper's
//! client), all driven by one thread running a current-thread tokio runtime, each connection
//! sending its requests one after the other and timing each.
//!
//! On this 2-core machine the client shares the cores with the node it measures: a thread per
//! client (a blocking HTTP client) spent more CPU per request than the node did, so what the
//! bench reported was as much the client as the node. One thread multiplexing every connection
//! costs a fraction of that, and the bench reports the CPU time of both sides beside the rates,
//! so the figures can be read for the node alone.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::header::{CONTENT_TYPE, HOST};
use hyper::Request;
use hyper_util::rt::TokioIo;

/// Timeout of one request, connection set-up included.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Largest answer body the load generator reads (a trace page of 1,000 events is ~1 MB).
pub const MAX_ANSWER_BYTES: usize = 16 << 20;

/// One request: a GET of `path`, or a POST of `body` (JSON) to `path`.
#[derive(Debug, Clone)]
pub struct Call {
    /// Path and query, e.g. `/v1/events`.
    pub path: String,
    /// The JSON body of a POST; `None` for a GET.
    pub body: Option<Bytes>,
}

/// What one connection saw: per request its status, latency and what `inspect` made of the
/// body.
pub type Seen<T> = Vec<(u16, Duration, T)>;

/// What a run of the load generator measured.
#[derive(Debug)]
pub struct Run<T> {
    /// Per connection, per request in order.
    pub seen: Vec<Seen<T>>,
    /// From the first request sent to the last answer read.
    pub wall: Duration,
    /// CPU time (user + system) of the load generator's thread over the run.
    pub client_cpu: Duration,
}

/// Sends each connection's calls in order on its own keep-alive connection to `addr`, all
/// connections at once; `inspect` turns an answer's status and body into what is kept of it.
/// Fails on the first transport error (refused connection, reset, timeout).
pub fn run<T: Send + 'static>(
    addr: SocketAddr,
    per_connection: Vec<Vec<Call>>,
    inspect: fn(u16, &[u8]) -> T,
) -> Result<Run<T>> {
    std::thread::Builder::new()
        .name("bench-load".into())
        .spawn(move || -> Result<Run<T>> {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            let cpu_before = thread_cpu()?;
            let started = Instant::now();
            let seen = runtime.block_on(async move {
                let mut tasks = tokio::task::JoinSet::new();
                for calls in per_connection {
                    tasks.spawn(connection(addr, calls, inspect));
                }
                let mut seen = Vec::new();
                while let Some(done) = tasks.join_next().await {
                    seen.push(done.context("a load connection panicked")??);
                }
                Ok::<_, anyhow::Error>(seen)
            })?;
            let wall = started.elapsed();
            let client_cpu = thread_cpu()?.saturating_sub(cpu_before);
            Ok(Run { seen, wall, client_cpu })
        })?
        .join()
        .map_err(|_| anyhow!("the load generator's thread panicked"))?
}

async fn connection<T>(
    addr: SocketAddr,
    calls: Vec<Call>,
    inspect: fn(u16, &[u8]) -> T,
) -> Result<Seen<T>> {
    let stream = tokio::time::timeout(REQUEST_TIMEOUT, tokio::net::TcpStream::connect(addr))
        .await
        .map_err(|_| anyhow!("connecting to {addr} timed out"))?
        .with_context(|| format!("connecting to {addr}"))?;
    stream.set_nodelay(true)?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake::<_, Full<Bytes>>(TokioIo::new(stream)).await?;
    let driver = tokio::spawn(conn);
    let host = addr.to_string();
    let mut seen = Vec::with_capacity(calls.len());
    for call in calls {
        let request = match call.body {
            Some(body) => Request::post(&call.path)
                .header(CONTENT_TYPE, "application/json")
                .header(HOST, &host)
                .body(Full::new(body))?,
            None => Request::get(&call.path).header(HOST, &host).body(Full::default())?,
        };
        let sent = Instant::now();
        let answer = tokio::time::timeout(REQUEST_TIMEOUT, async {
            sender.ready().await?;
            let response = sender.send_request(request).await?;
            let status = response.status().as_u16();
            let body = http_body_util::Limited::new(response.into_body(), MAX_ANSWER_BYTES)
                .collect()
                .await
                .map_err(|e| anyhow!("reading the answer: {e}"))?
                .to_bytes();
            Ok::<_, anyhow::Error>((status, body))
        })
        .await
        .map_err(|_| anyhow!("{} timed out after {} s", call.path, REQUEST_TIMEOUT.as_secs()))?
        .with_context(|| format!("request {}", call.path))?;
        let latency = sent.elapsed();
        seen.push((answer.0, latency, inspect(answer.0, &answer.1)));
    }
    drop(sender);
    driver.abort();
    Ok(seen)
}

/// CPU time (user + system) of the calling thread, from `/proc/thread-self/stat`.
pub fn thread_cpu() -> Result<Duration> {
    cpu_of("/proc/thread-self/stat")
}

/// CPU time (user + system) of process `pid`, all its threads, from `/proc/PID/stat`.
pub fn process_cpu(pid: u32) -> Result<Duration> {
    cpu_of(&format!("/proc/{pid}/stat"))
}

/// Fields 14 and 15 of a `stat` file (utime, stime), in clock ticks of 1/100 s (`USER_HZ`,
/// 100 on Linux for every architecture this runs on).
fn cpu_of(path: &str) -> Result<Duration> {
    let stat = std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?;
    // The command name (field 2) is in parentheses and may hold spaces: split after it.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).context("no ')' in a stat file")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3, so utime (14) and stime (15) are its 12th and 13th.
    let (Some(u), Some(s)) = (fields.get(11), fields.get(12)) else {
        bail!("{path} has too few fields");
    };
    let ticks: u64 = u.parse::<u64>()? + s.parse::<u64>()?;
    Ok(Duration::from_millis(ticks * 10))
}
