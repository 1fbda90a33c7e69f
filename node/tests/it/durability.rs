//! The sign-state guard and the WAL under crashes and failed writes.
//!
//! Crashes: the test re-runs its own binary as a child (`crash_child`, ignored in normal runs)
//! with `FAILPOINTS` set so that the child aborts at the k-th time it reaches one failpoint,
//! as a crash at that step would. The child prints each permit or append only after it was
//! reported durable; the parent then reopens what the child left and checks that it is the
//! state before or after the step (never anything else, never less than what was reported),
//! and that the guard still refuses every conflicting or earlier signature.
//!
//! Failed writes: the same points configured to fail with an error, in this process.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tradeloop_crypto::{Hash, PublicKey, SigningKey};
use tradeloop_node::consensus::guard::{Position, SignGuard, Step};
use tradeloop_node::consensus::wal::Wal;

const CHILD_ENV: &str = "TRADELOOP_DURABILITY_CHILD";
/// Permits or appends the child attempts; every k used below is smaller.
const STEPS: u64 = 40;
/// Runs per failpoint: the child aborts at the k-th time it reaches the point.
const CRASH_AT: [u64; 5] = [0, 1, 3, 7, 12];
/// Bound on one child run.
const CHILD_TIMEOUT: Duration = Duration::from_secs(60);
const WAL_HEIGHT: u64 = 7;

/// The `fail` registry is global to this process: a test that configures a failpoint would
/// make the in-process writes of the other tests fail. Every test here holds this lock.
static FAILPOINT_REGISTRY: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn exclusive() -> std::sync::MutexGuard<'static, ()> {
    FAILPOINT_REGISTRY.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn chain() -> Hash {
    Hash([7; 32])
}

fn key() -> PublicKey {
    SigningKey::from_seed_label("durability-validator").public_key()
}

/// The i-th position the child signs at: three steps per height, heights from 1.
fn position(i: u64) -> Position {
    let step = match i % 3 {
        0 => Step::Propose,
        1 => Step::Prevote,
        _ => Step::Precommit,
    };
    Position { height: i / 3 + 1, round: 0, step }
}

fn value(i: u64) -> Option<Hash> {
    Some(Hash([u8::try_from(i % 251).unwrap() + 1; 32]))
}

fn record(i: u64) -> Vec<u8> {
    format!("record {i} ").repeat(usize::try_from(i % 5 + 1).unwrap()).into_bytes()
}

/// Not a test of its own: the body of the child process (`CHILD_ENV` = `guard:DIR` or
/// `wal:DIR`). Run directly, it returns at once.
#[test]
#[ignore = "run by the crash tests as a child process"]
fn crash_child() {
    let Ok(spec) = std::env::var(CHILD_ENV) else { return };
    let _failpoints = tradeloop_ledger::storage::failpoint::from_env();
    let (what, dir) = spec.split_once(':').unwrap();
    let dir = Path::new(dir);
    let mut out = std::io::stdout();
    match what {
        "guard" => {
            let mut guard = SignGuard::open(&dir.join("sign-state.bin"), chain(), key()).unwrap();
            for i in 0..STEPS {
                guard.permit(position(i), value(i)).unwrap();
                writeln!(out, "durable {i}").unwrap();
                out.flush().unwrap();
            }
        }
        "wal" => {
            let (mut wal, _) = Wal::open(dir, WAL_HEIGHT).unwrap();
            for i in 0..STEPS {
                wal.append(&record(i)).unwrap();
                writeln!(out, "durable {i}").unwrap();
                out.flush().unwrap();
            }
        }
        other => panic!("unknown child mode {other}"),
    }
}

/// Runs the child until it aborts at `point`'s `k`-th hit; returns how many steps it reported
/// durable.
fn crash(mode: &str, dir: &Path, point: &str, k: u64) -> u64 {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "durability::crash_child",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, format!("{mode}:{}", dir.display()))
        .env("FAILPOINTS", format!("{point}={k}*off->return(abort)"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > CHILD_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{mode} child at {point} (k = {k}) ran over {CHILD_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let mut stdout = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut stdout).unwrap();
    assert!(!status.success(), "{mode} child at {point} (k = {k}) was meant to crash: {status}");
    // libtest prints `test crash_child ... ` without a newline before the body runs, so the
    // first report shares its line.
    let reported = stdout.matches("durable ").count();
    u64::try_from(reported).unwrap()
}

#[test]
fn a_crash_at_any_sign_state_step_leaves_the_mark_before_or_after_and_never_permits_equivocation() {
    let _registry = exclusive();
    for point in ["signstate::before-write", "signstate::after-write", "signstate::after-rename"] {
        for k in CRASH_AT {
            let dir = tempfile::tempdir().unwrap();
            let reported = crash("guard", dir.path(), point, k);
            // The k-th persist crashed: k permits were durable and reported before it.
            assert_eq!(reported, k, "{point} k = {k}");
            let path = dir.path().join("sign-state.bin");
            let mut guard = SignGuard::open(&path, chain(), key())
                .unwrap_or_else(|e| panic!("{point} k = {k}: the guard does not reopen: {e}"));
            let last = guard.last().map(|r| (r.position, r.value));
            // Before the rename the old record stands; after it the new one (a process crash
            // keeps the page cache). Either way, never less than what was reported.
            let expect_new = point == "signstate::after-rename";
            let expected = if expect_new { Some(k) } else { k.checked_sub(1) };
            assert_eq!(last, expected.map(|i| (position(i), value(i))), "{point} k = {k}");
            if let Some(i) = expected {
                // The mark holds: another value there is refused, every earlier position too.
                let err = guard.permit(position(i), Some(Hash([0xEE; 32]))).unwrap_err();
                assert_eq!(err.code(), "SIGN_CONFLICT", "{point} k = {k}");
                for j in 0..i {
                    let err = guard.permit(position(j), value(j)).unwrap_err();
                    assert_eq!(err.code(), "SIGN_REGRESSION", "{point} k = {k} j = {j}");
                }
                // Re-sending exactly what was signed is allowed.
                guard.permit(position(i), value(i)).unwrap();
            }
            // And the validator carries on from there.
            let next = expected.map_or(0, |i| i + 1);
            guard.permit(position(next), value(next)).unwrap();
            drop(guard);
            let guard = SignGuard::open(&path, chain(), key()).unwrap();
            assert_eq!(guard.last().unwrap().position, position(next));
        }
    }
}

#[test]
fn a_crash_at_any_wal_step_leaves_the_records_before_or_after() {
    let _registry = exclusive();
    for point in ["wal::before-append", "wal::after-write", "wal::after-fsync"] {
        for k in CRASH_AT {
            let dir = tempfile::tempdir().unwrap();
            let reported = crash("wal", dir.path(), point, k);
            assert_eq!(reported, k, "{point} k = {k}");
            let (mut wal, records) = Wal::open(dir.path(), WAL_HEIGHT)
                .unwrap_or_else(|e| panic!("{point} k = {k}: the WAL does not reopen: {e}"));
            // Written (with or without its fsync) means the page cache holds it whole.
            let expected = if point == "wal::before-append" { k } else { k + 1 };
            let want: Vec<Vec<u8>> = (0..expected).map(record).collect();
            assert_eq!(records, want, "{point} k = {k}");
            wal.append(b"after the crash").unwrap();
            drop(wal);
            let (_, records) = Wal::open(dir.path(), WAL_HEIGHT).unwrap();
            assert_eq!(records.len() as u64, expected + 1, "{point} k = {k}");
            assert_eq!(records.last().unwrap(), b"after the crash");
        }
    }
}

/// A torn WAL record (a crash part-way through its write) is cut at reopen, for every length
/// the tail could have been cut to; the whole records before it are kept.
#[test]
fn a_wal_torn_at_any_byte_of_its_last_record_reopens_to_the_whole_records() {
    let _registry = exclusive();
    let dir = tempfile::tempdir().unwrap();
    let (mut wal, _) = Wal::open(dir.path(), WAL_HEIGHT).unwrap();
    for i in 0..4 {
        wal.append(&record(i)).unwrap();
    }
    drop(wal);
    let path = dir.path().join(format!("wal-{WAL_HEIGHT:020}.log"));
    let whole = std::fs::read(&path).unwrap();
    let last_len = record(3).len() + tradeloop_ledger::encoding::frame::FRAME_HEADER_BYTES;
    for cut in 1..last_len {
        std::fs::write(&path, &whole[..whole.len() - cut]).unwrap();
        let (_, records) = Wal::open(dir.path(), WAL_HEIGHT).unwrap();
        assert_eq!(records, (0..3).map(record).collect::<Vec<_>>(), "cut {cut}");
    }
}

/// Failpoints configured to fail the step with an error, in this process (holding the
/// registry lock, see [`exclusive`]).
#[test]
fn a_failed_write_is_reported_and_leaves_nothing_half_done() {
    let _registry = exclusive();
    // Sign-state: the failed permit is refused, then the guard permits nothing until reopened;
    // the reopened guard holds the old record, or the new one once the rename happened.
    for (n, point) in
        ["signstate::before-write", "signstate::after-write", "signstate::after-rename"]
            .into_iter()
            .enumerate()
    {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sign-state.bin");
        let mut guard = SignGuard::open(&path, chain(), key()).unwrap();
        guard.permit(position(0), value(0)).unwrap();
        fail::cfg(point, "return").unwrap();
        let err = guard.permit(position(1), value(1)).unwrap_err();
        fail::remove(point);
        assert_eq!(err.code(), "SIGN_STATE_IO", "{point}");
        assert!(err.to_string().contains("nothing was signed"), "{err}");
        let err = guard.permit(position(1), value(1)).unwrap_err();
        assert_eq!(err.code(), "SIGN_STATE_UNCERTAIN", "{point}: {err}");
        let err = guard.permit(position(2), value(2)).unwrap_err();
        assert_eq!(err.code(), "SIGN_STATE_UNCERTAIN", "{point}");
        drop(guard);
        let mut guard = SignGuard::open(&path, chain(), key()).unwrap();
        let expected = if n == 2 { 1 } else { 0 };
        assert_eq!(guard.last().unwrap().position, position(expected), "{point}");
        guard.permit(position(2), value(2)).unwrap();
    }
    // WAL: the failed record is cut (even one that reached the disk: it was reported failed),
    // the next append follows the whole records, and a reopen replays exactly those.
    for point in ["wal::before-append", "wal::after-write", "wal::after-fsync"] {
        let dir = tempfile::tempdir().unwrap();
        let (mut wal, _) = Wal::open(dir.path(), WAL_HEIGHT).unwrap();
        wal.append(&record(0)).unwrap();
        fail::cfg(point, "return").unwrap();
        let err = wal.append(&record(1)).unwrap_err();
        fail::remove(point);
        assert_eq!(err.code(), "WAL_IO", "{point}");
        wal.append(&record(2)).unwrap();
        drop(wal);
        let (_, records) = Wal::open(dir.path(), WAL_HEIGHT).unwrap();
        assert_eq!(records, vec![record(0), record(2)], "{point}");
    }
}

/// The inputs a validator wrote to its WAL are fsynced before it signs anything: when that
/// fsync fails, nothing is signed (the guard records nothing and no message leaves), and the
/// WAL refuses further writes until the node restarts.
#[test]
fn a_validator_whose_wal_cannot_be_synced_signs_nothing() {
    use crate::wal_replay::{build_round, core, setup};
    use tradeloop_ledger::sample::trade_events;
    use tradeloop_node::consensus::core::{propose, Action};

    let _registry = exclusive();
    let s = setup();
    let key = s.cast.validator_keys[s.proposer].clone();
    let ledger =
        tradeloop_ledger::Ledger::open(&s.dir.path().join("data"), s.cast.genesis.clone()).unwrap();
    let t0 = s.cast.genesis.doc.genesis_time_ms + 1000;
    let events = trade_events(&s.cast, 1, t0);
    let built = ledger.build_block(&events[..3], t0 + 1000, &key).unwrap();
    let (mut c, _) = core(&s, true);
    let actions = c.handle(c.start_height(1)).unwrap();
    let round = build_round(&actions).unwrap();
    c.persist_block(&built.block).unwrap();
    fail::cfg("wal::after-fsync", "return").unwrap();
    let result = c.handle(propose(1, round, built.hash));
    fail::remove("wal::after-fsync");
    let err = result.expect_err("the proposal must not be signed over a WAL that is not durable");
    assert!(err.to_string().contains("consensus WAL"), "{err}");
    let guard = SignGuard::open(
        &s.dir.path().join("sign-state.bin"),
        s.cast.genesis.hash,
        key.public_key(),
    );
    assert!(guard.unwrap().last().is_none(), "the guard recorded a signature");
    // The WAL stays refused until reopened, so the validator cannot carry on past the gap.
    let again = c.handle(propose(1, round, built.hash));
    assert!(
        again.as_ref().map_or(true, |a| !a.iter().any(|a| matches!(a, Action::Broadcast(_)))),
        "signed after a failed fsync: {again:?}"
    );
}
