//! Where the node's consensus driver reads the time: the system's clocks in a node, a virtual
//! clock that only the caller moves in the simulator (`crate::sim`). Timers are [`Instant`]s
//! either way, so the driver's code is the same in both.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A source of monotonic and wall-clock time.
#[derive(Clone, Debug, Default)]
pub enum Clock {
    /// The system's clocks.
    #[default]
    System,
    /// A virtual clock: `elapsed_ms` since `start`, and Unix time `unix_start_ms` at `start`.
    Virtual(VirtualClock),
}

/// A clock that stands still until it is moved ([`VirtualClock::advance_to`]).
#[derive(Clone, Debug)]
pub struct VirtualClock {
    start: Instant,
    unix_start_ms: u64,
    elapsed_ms: Arc<AtomicU64>,
}

impl VirtualClock {
    /// A clock reading `unix_start_ms` now.
    pub fn new(unix_start_ms: u64) -> VirtualClock {
        VirtualClock {
            start: Instant::now(),
            unix_start_ms,
            elapsed_ms: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Moves the clock to `elapsed_ms` after its start (never back).
    pub fn advance_to(&self, elapsed_ms: u64) {
        self.elapsed_ms.fetch_max(elapsed_ms, Ordering::Relaxed);
    }

    /// Milliseconds since its start.
    pub fn elapsed_ms(&self) -> u64 {
        self.elapsed_ms.load(Ordering::Relaxed)
    }

    /// The virtual milliseconds from its start to `at` (0 for an instant before it).
    pub fn ms_at(&self, at: Instant) -> u64 {
        let since = at.saturating_duration_since(self.start);
        // Round up: a timer due within a millisecond fires at the next one, never early.
        let ms = since.as_nanos().div_ceil(1_000_000);
        u64::try_from(ms).unwrap_or(u64::MAX)
    }
}

impl Clock {
    /// The monotonic now (timers).
    pub fn now(&self) -> Instant {
        match self {
            Clock::System => Instant::now(),
            Clock::Virtual(v) => v.start + Duration::from_millis(v.elapsed_ms()),
        }
    }

    /// Unix milliseconds (block and admission times).
    pub fn unix_ms(&self) -> u64 {
        match self {
            Clock::System => std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
                .unwrap_or(0),
            Clock::Virtual(v) => v.unix_start_ms + v.elapsed_ms(),
        }
    }
}

/// The system's wall clock in Unix milliseconds.
pub fn now_ms() -> u64 {
    Clock::System.unix_ms()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_virtual_clock_moves_only_forward_and_only_when_told() {
        let v = VirtualClock::new(1_000_000);
        let clock = Clock::Virtual(v.clone());
        let t0 = clock.now();
        assert_eq!(clock.unix_ms(), 1_000_000);
        v.advance_to(250);
        assert_eq!(clock.now() - t0, Duration::from_millis(250));
        assert_eq!(clock.unix_ms(), 1_000_250);
        v.advance_to(100);
        assert_eq!(v.elapsed_ms(), 250, "never back");
        assert_eq!(v.ms_at(t0 + Duration::from_micros(250_100)), 251, "rounded up");
        assert_eq!(v.ms_at(t0), 0);
    }
}
