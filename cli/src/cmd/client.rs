//! `tradeloop event submit` and `tradeloop status`: a client of a running node's HTTP API
//! (`docs/api.md`). Plain HTTP only: the API listens on a local or private address, and TLS
//! would bring a C build into the binary (see the workspace manifest).

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;
use serde::Deserialize;
use tradeloop_ledger::SignedEvent;
use tradeloop_node::api::{
    EventResult, NodeStatus, SubmitResponse, DEFAULT_MAX_EVENTS_PER_REQUEST,
};

use super::append::MAX_EVENT_LINE_BYTES;
use crate::cmd::args::NodeArgs;
use crate::input::{BoundedLines, Line};
use crate::output::{Diag, Out};

/// Events per request when `--batch` is not given.
pub const DEFAULT_BATCH_EVENTS: u64 = 100;
/// Largest `--batch`: the node's default `max_events_per_request`.
pub const MAX_BATCH_EVENTS: usize = DEFAULT_MAX_EVENTS_PER_REQUEST;
/// Largest answer read from the node, in bytes (16 MiB; a 1000-event answer is ~200 KiB).
pub const MAX_RESPONSE_BYTES: u64 = 16 * 1024 * 1024;
/// Attempts per batch while the node says it is full or busy (429, 503 `NODE_BUSY`/`OVERLOADED`).
pub const MAX_SUBMIT_ATTEMPTS: u32 = 5;
/// Longest single wait honoured from a `Retry-After`, in milliseconds (30 s).
pub const MAX_RETRY_WAIT_MS: u64 = 30_000;
/// Time to connect to the node, in milliseconds.
pub const CONNECT_TIMEOUT_MS: u64 = 5_000;
/// Time for one request without a commit wait, in milliseconds; with `--wait`, the wait is
/// added to it.
pub const REQUEST_TIMEOUT_MS: u64 = 60_000;

#[derive(Debug, Args)]
pub struct SubmitArgs {
    #[command(flatten)]
    pub node: NodeArgs,
    /// Wait until each accepted event is committed (exit 0 only if all are).
    #[arg(long)]
    pub wait: bool,
    /// How long the node waits for the commits of one batch, in milliseconds (default: the
    /// node's; the node caps it at its `max_wait_ms`).
    #[arg(long, value_name = "N", requires = "wait")]
    pub timeout_ms: Option<u64>,
    /// Events per request.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_BATCH_EVENTS,
        value_parser = clap::value_parser!(u64).range(1..=MAX_BATCH_EVENTS as u64))]
    pub batch: u64,
    /// A file of signed envelopes, one JSON object per line (`-` for standard input).
    pub events: PathBuf,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub node: NodeArgs,
    /// Print the node's JSON.
    #[arg(long)]
    pub json: bool,
}

/// One HTTP client for a command, talking to one node.
pub struct Client {
    agent: ureq::Agent,
    base: String,
    /// `Bearer TOKEN`, sent with every request when set.
    authorization: Option<String>,
}

/// What the node answered, read in full (bounded).
struct Reply {
    status: u16,
    retry_after_ms: Option<u64>,
    body: String,
}

/// The members of a problem+json answer we read.
#[derive(Debug, Default, Deserialize)]
struct Problem {
    code: Option<String>,
    detail: Option<String>,
    retry_after_ms: Option<u64>,
}

impl Client {
    /// A client of the node `args` names, with `args`'s token.
    pub fn for_node(args: &NodeArgs, request_timeout_ms: u64) -> Result<Client> {
        Client::new(&args.node, args.token.as_deref(), request_timeout_ms)
    }

    fn new(url: &str, token: Option<&str>, request_timeout_ms: u64) -> Result<Client> {
        let base = url.trim_end_matches('/').to_owned();
        if base.starts_with("https://") {
            bail!("--node {url}: this build of tradeloop speaks plain HTTP to the node only; give the http:// address of its [api] listen");
        }
        if !base.starts_with("http://") {
            bail!("--node {url} is not an http:// URL; give the address of the node's [api] listen, e.g. http://127.0.0.1:7071");
        }
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_millis(CONNECT_TIMEOUT_MS)))
            .timeout_global(Some(Duration::from_millis(request_timeout_ms)))
            .build();
        let authorization = match token.map(str::trim) {
            None | Some("") => None,
            Some(t) if t.bytes().all(|b| b.is_ascii_graphic()) => Some(format!("Bearer {t}")),
            Some(_) => bail!(
                "the token (--token or TRADELOOP_TOKEN) holds spaces or characters that are not \
                 printable ASCII; give the token exactly as `tradeloop token new` printed it"
            ),
        };
        Ok(Client { agent: config.into(), base, authorization })
    }

    /// The node's address, as given.
    pub fn base(&self) -> &str {
        &self.base
    }

    fn get(&self, path: &str) -> Result<Reply> {
        let url = format!("{}{path}", self.base);
        let mut request = self.agent.get(&url);
        if let Some(a) = &self.authorization {
            request = request.header("authorization", a);
        }
        self.read(request.call())
    }

    fn post_json(&self, path: &str, body: String) -> Result<Reply> {
        let url = format!("{}{path}", self.base);
        let mut request = self.agent.post(&url).header("content-type", "application/json");
        if let Some(a) = &self.authorization {
            request = request.header("authorization", a);
        }
        self.read(request.send(body))
    }

    /// `GET path`, answered 200 with a JSON body of type `T`; any other answer is an error that
    /// says what the node said (`what` names the request for a person).
    pub fn get_json<T: serde::de::DeserializeOwned>(&self, path: &str, what: &str) -> Result<T> {
        let text = self.get_text(path, what)?;
        serde_json::from_str(&text).with_context(|| {
            format!("the node at {} answered {what} in a form this client does not understand (a different version?)", self.base)
        })
    }

    /// `GET path`, answered 200; its body as text.
    pub fn get_text(&self, path: &str, what: &str) -> Result<String> {
        let reply = self.get(path)?;
        if reply.status != 200 {
            bail!("the node at {} did not give {what}: {}", self.base, reply.refusal());
        }
        Ok(reply.body)
    }

    fn read(&self, sent: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Result<Reply> {
        let mut response = sent.map_err(|e| self.transport_error(e))?;
        let status = response.status().as_u16();
        let retry_after_ms = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(|s| s.saturating_mul(1000));
        let body = response
            .body_mut()
            .with_config()
            .limit(MAX_RESPONSE_BYTES)
            .read_to_string()
            .map_err(|e| self.transport_error(e))?;
        Ok(Reply { status, retry_after_ms, body })
    }

    fn transport_error(&self, e: ureq::Error) -> anyhow::Error {
        let unreachable = match &e {
            ureq::Error::Io(io) => matches!(
                io.kind(),
                std::io::ErrorKind::ConnectionRefused
                    | std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::AddrNotAvailable
            ),
            ureq::Error::ConnectionFailed
            | ureq::Error::HostNotFound
            | ureq::Error::Timeout(ureq::Timeout::Connect) => true,
            _ => false,
        };
        if unreachable {
            return anyhow::anyhow!(
                "the node is not reachable at {} ({e}): check that `tradeloop node` is running and that --node is the address of its [api] listen",
                self.base
            );
        }
        anyhow::anyhow!("talking to the node at {} failed: {e}", self.base)
    }
}

impl Reply {
    /// Whether the body carries per-event `results` (a submit answer, or a problem of a submit
    /// that admitted nothing).
    fn has_results(&self) -> bool {
        #[derive(Deserialize)]
        struct Results {
            results: Option<serde::de::IgnoredAny>,
        }
        serde_json::from_str::<Results>(&self.body).is_ok_and(|r| r.results.is_some())
    }

    fn problem(&self) -> Problem {
        serde_json::from_str(&self.body).unwrap_or_default()
    }

    /// A sentence for an answer we do not act on.
    fn refusal(&self) -> String {
        let p = self.problem();
        match (p.code, p.detail) {
            (Some(code), Some(detail)) => format!("HTTP {} {code}: {detail}", self.status),
            _ => {
                let text: String = self.body.chars().take(200).collect();
                format!("HTTP {}: {text}", self.status)
            }
        }
    }

    /// How long the node asked us to wait, capped.
    fn wait_ms(&self) -> u64 {
        let p = self.problem();
        p.retry_after_ms.or(self.retry_after_ms).unwrap_or(1000).min(MAX_RETRY_WAIT_MS)
    }
}

pub fn status(args: StatusArgs) -> Result<ExitCode> {
    let client = Client::for_node(&args.node, REQUEST_TIMEOUT_MS)?;
    let status: NodeStatus = client.get_json("/v1/status", "its status")?;
    if args.json {
        writeln!(Out, "{}", serde_json::to_string(&status)?)?;
        return Ok(ExitCode::SUCCESS);
    }
    let yes_no = |b: bool| if b { "yes" } else { "no" };
    writeln!(Out, "chain      {} (genesis {})", status.chain_id, status.genesis_hash)?;
    writeln!(Out, "height     {} (tip {})", status.height, status.tip_hash)?;
    writeln!(Out, "node key   {} (validator: {})", status.node_key, yes_no(status.validator))?;
    writeln!(Out, "syncing    {}", yes_no(status.syncing))?;
    writeln!(Out, "mempool    {} events, {} bytes", status.mempool_events, status.mempool_bytes)?;
    writeln!(Out, "peers      {} connected", status.connected_peers.len())?;
    for peer in &status.connected_peers {
        writeln!(Out, "           {peer}")?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Counts of what became of the events of one `event submit`.
#[derive(Debug, Default)]
struct Tally {
    accepted: u64,
    committed: u64,
    rejected: u64,
    pending: u64,
    full: u64,
}

impl Tally {
    fn total(&self) -> u64 {
        self.accepted + self.committed + self.rejected + self.pending + self.full
    }

    fn all_succeeded(&self, wait: bool) -> bool {
        let done = if wait { self.committed } else { self.accepted + self.committed };
        done == self.total()
    }
}

pub fn submit(args: SubmitArgs) -> Result<ExitCode> {
    let wait_query = match (args.wait, args.timeout_ms) {
        (false, _) => String::new(),
        (true, None) => "?wait=commit".to_owned(),
        (true, Some(ms)) => format!("?wait=commit&timeout_ms={ms}"),
    };
    // With a wait the node holds the request up to its max_wait_ms (30 s by default); give it
    // that and more before giving up on it.
    let wait_budget_ms = if args.wait { args.timeout_ms.unwrap_or(MAX_RETRY_WAIT_MS) } else { 0 };
    let client = Client::for_node(&args.node, REQUEST_TIMEOUT_MS.saturating_add(wait_budget_ms))?;
    let reader: Box<dyn BufRead> = if args.events == Path::new("-") {
        Box::new(std::io::stdin().lock())
    } else {
        let f = std::fs::File::open(&args.events)
            .with_context(|| format!("cannot open events file {}", args.events.display()))?;
        Box::new(std::io::BufReader::new(f))
    };
    let batch_size = usize::try_from(args.batch).unwrap_or(MAX_BATCH_EVENTS);
    let path = format!("/v1/events{wait_query}");
    let mut tally = Tally::default();
    let mut batch: Vec<SignedEvent> = Vec::with_capacity(batch_size);
    let mut lines = BoundedLines::new(reader, MAX_EVENT_LINE_BYTES);
    let result = (|| -> Result<()> {
        for line in lines.by_ref() {
            let (number, bytes) = match line {
                Line::Text { number, bytes } => (number, bytes),
                Line::TooLong { number } => {
                    writeln!(Out, "rejected line {number} EVENT_TOO_LARGE: the line is longer than {MAX_EVENT_LINE_BYTES} bytes (MAX_EVENT_LINE_BYTES); not sent")?;
                    tally.rejected += 1;
                    continue;
                }
                Line::Failed { number, error } => {
                    bail!("cannot read line {number} of {}: {error}", args.events.display())
                }
            };
            if bytes.trim_ascii().is_empty() {
                continue;
            }
            // The node parses with the same parser; refusing here saves a round trip and keeps
            // the line number, which the node never sees.
            match SignedEvent::from_envelope_json(&bytes) {
                Ok(event) => batch.push(event),
                Err(r) => {
                    writeln!(Out, "rejected line {number} {}: {}; not sent", r.code, r.message)?;
                    tally.rejected += 1;
                    continue;
                }
            }
            if batch.len() >= batch_size {
                submit_batch(&client, &path, std::mem::take(&mut batch), &mut tally)?;
            }
        }
        if !batch.is_empty() {
            submit_batch(&client, &path, std::mem::take(&mut batch), &mut tally)?;
        }
        Ok(())
    })();
    let summary = format!(
        "{} events: {} accepted, {} committed, {} rejected, {} pending, {} full",
        tally.total(),
        tally.accepted,
        tally.committed,
        tally.rejected,
        tally.pending,
        tally.full
    );
    // Once: a submit that stopped says it in its error, with the count.
    result.with_context(|| format!("event submit stopped; before that: {summary}"))?;
    writeln!(Diag, "{summary}");
    Ok(if tally.all_succeeded(args.wait) { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// Submits one batch, resubmitting the events the node had no room for (bounded), and prints one
/// line per event in order.
fn submit_batch(
    client: &Client,
    path: &str,
    events: Vec<SignedEvent>,
    tally: &mut Tally,
) -> Result<()> {
    let mut results: Vec<Option<EventResult>> = vec![None; events.len()];
    // Indexes (into `events`) still to send.
    let mut todo: Vec<usize> = (0..events.len()).collect();
    for attempt in 1..=MAX_SUBMIT_ATTEMPTS {
        let parts: Vec<String> =
            todo.iter().filter_map(|&i| events.get(i)).map(SignedEvent::to_envelope_json).collect();
        let reply = client.post_json(path, format!("[{}]", parts.join(",")))?;
        let last = attempt == MAX_SUBMIT_ATTEMPTS;
        let code = reply.problem().code;
        // A request that admitted nothing is a problem (409 all committed already, 422 refused,
        // 429 no room) that still carries every event's result.
        let has_results = matches!(reply.status, 409 | 422 | 429) && reply.has_results();
        match (reply.status, code.as_deref()) {
            (200, _) => {}
            _ if has_results => {}
            (429, _) | (503, Some("NODE_BUSY" | "OVERLOADED" | "NOT_SYNCED")) => {
                if last {
                    break; // the events still to send are reported `full`
                }
                let ms = reply.wait_ms();
                writeln!(Diag, "note: the node is full or busy ({}); retrying {} events in {ms} ms (attempt {} of {MAX_SUBMIT_ATTEMPTS})", code.unwrap_or_default(), todo.len(), attempt + 1);
                std::thread::sleep(Duration::from_millis(ms));
                continue;
            }
            (413, Some("TOO_MANY_EVENTS" | "BODY_TOO_LARGE")) => {
                bail!(
                    "the node refused a batch of {} events: {}; give a smaller --batch",
                    todo.len(),
                    reply.refusal()
                )
            }
            _ => bail!("the node refused a batch of {} events: {}", todo.len(), reply.refusal()),
        }
        let answer: SubmitResponse = serde_json::from_str(&reply.body)
            .context("the node answered a submit this client does not understand")?;
        if answer.results.len() != todo.len() {
            bail!("the node answered {} results for {} events; it may be a different version than this client", answer.results.len(), todo.len());
        }
        let mut still_full = Vec::new();
        let mut longest_wait_ms = 0u64;
        for (i, result) in todo.iter().copied().zip(answer.results) {
            if let EventResult::Full { retry_after_ms, .. } = &result {
                if !last {
                    longest_wait_ms = longest_wait_ms.max(*retry_after_ms);
                    still_full.push(i);
                    continue;
                }
            }
            if let Some(slot) = results.get_mut(i) {
                *slot = Some(result);
            }
        }
        if still_full.is_empty() {
            break;
        }
        let ms = longest_wait_ms.clamp(1, MAX_RETRY_WAIT_MS);
        writeln!(
            Diag,
            "note: the mempool had no room for {} events; retrying them in {ms} ms",
            still_full.len()
        );
        std::thread::sleep(Duration::from_millis(ms));
        todo = still_full;
    }
    for (event, result) in events.iter().zip(results) {
        let id = event.id();
        match result {
            Some(EventResult::Accepted { id }) => {
                tally.accepted += 1;
                writeln!(Out, "accepted {id}")?;
            }
            Some(EventResult::Committed { id, height, block_hash, index }) => {
                tally.committed += 1;
                writeln!(Out, "committed {id} height {height} block {block_hash} index {index}")?;
            }
            Some(EventResult::Rejected { code, message, .. }) => {
                tally.rejected += 1;
                writeln!(Out, "rejected {id} {code}: {message}")?;
            }
            Some(EventResult::Pending { id }) => {
                tally.pending += 1;
                writeln!(Out, "pending {id}: accepted, not committed when the wait ended; check again later (`tradeloop event show`) or submit it again (a committed event answers `committed`)")?;
            }
            Some(EventResult::Full { .. }) | None => {
                tally.full += 1;
                writeln!(Out, "full {id}: the node's mempool had no room (or the node was busy) in {MAX_SUBMIT_ATTEMPTS} attempts; not admitted: submit it again later")?;
            }
        }
    }
    Ok(())
}
