//! The seeded random numbers of fault proxies.
//!
//! Every decision a proxy makes comes from a ChaCha8 stream chosen by the proxy's
//! seed, its name, the connection's number and the direction: two directions (or
//! two connections) never draw from the same stream, so whichever of them the
//! scheduler runs first, each sees the same numbers on every run with the same
//! seed. Ranges and probabilities are computed here from raw 64-bit outputs, not
//! by a general-purpose library, so the decisions of a seed never change with a
//! dependency's version.

use std::time::Duration;

use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::fault::Flow;

/// One stream of decisions.
#[derive(Debug, Clone)]
pub struct FaultRng {
    inner: ChaCha8Rng,
}

/// Which stream of a connection: one per flow, one for the per-connection choices
/// (`probability`).
#[derive(Debug, Clone, Copy)]
pub enum StreamOf {
    Flow(Flow),
    Choices,
}

impl FaultRng {
    /// The stream of `connection` (1-based) of proxy `proxy` under `seed`.
    pub fn new(seed: u64, proxy: &str, connection: u64, which: StreamOf) -> Self {
        let mut key = [0u8; 32];
        key[..8].copy_from_slice(&seed.to_le_bytes());
        // FNV-1a of the name: stable across platforms and releases (std's hasher
        // is not), so a proxy renamed is a different stream and nothing else is.
        let mut name_hash: u64 = 0xcbf2_9ce4_8422_2325;
        for byte in proxy.bytes() {
            name_hash ^= u64::from(byte);
            name_hash = name_hash.wrapping_mul(0x0100_0000_01b3);
        }
        key[8..16].copy_from_slice(&name_hash.to_le_bytes());
        let mut inner = ChaCha8Rng::from_seed(key);
        let lane = match which {
            StreamOf::Flow(Flow::Up) => 0,
            StreamOf::Flow(Flow::Down) => 1,
            StreamOf::Choices => 2,
        };
        inner.set_stream(connection.wrapping_mul(4).wrapping_add(lane));
        Self { inner }
    }

    /// A fixed stream, for tests and the fuzz target.
    pub fn from_seed(seed: u64) -> Self {
        Self::new(seed, "", 0, StreamOf::Choices)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.inner.next_u64()
    }

    /// True with probability `p`. 0 and 1 consume no number, so a fault that is
    /// certain does not shift the decisions drawn after it.
    pub fn chance(&mut self, p: f64) -> bool {
        if p <= 0.0 {
            return false;
        }
        if p >= 1.0 {
            return true;
        }
        // 53 random bits as a fraction in [0, 1).
        let fraction = (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        fraction < p
    }

    /// A number in `min..=max` (Lemire's multiply-shift; the bias is below 2^-32
    /// for the sizes a scenario uses).
    pub fn between(&mut self, min: u64, max: u64) -> u64 {
        if max <= min {
            return min;
        }
        let span = max - min + 1;
        if span == 0 {
            return self.next_u64();
        }
        min + ((u128::from(self.next_u64()) * u128::from(span)) >> 64) as u64
    }

    /// `delay` moved by a uniform random amount within `jitter` either way (never
    /// below zero), for the TCP and UDP `latency` faults alike.
    pub fn jittered(&mut self, delay: Duration, jitter: Duration) -> Duration {
        if jitter.is_zero() {
            return delay;
        }
        let span = jitter.as_nanos().min(u64::MAX as u128 / 2) as u64;
        let offset = self.between(0, span * 2);
        if offset >= span {
            delay + Duration::from_nanos(offset - span)
        } else {
            delay.saturating_sub(Duration::from_nanos(span - offset))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_numbers_and_streams_differ() {
        let draw = |seed, name, conn, which| {
            let mut rng = FaultRng::new(seed, name, conn, which);
            (0..8).map(|_| rng.next_u64()).collect::<Vec<_>>()
        };
        let up = draw(7, "flaky", 1, StreamOf::Flow(Flow::Up));
        assert_eq!(up, draw(7, "flaky", 1, StreamOf::Flow(Flow::Up)));
        assert_ne!(up, draw(7, "flaky", 1, StreamOf::Flow(Flow::Down)));
        assert_ne!(up, draw(7, "flaky", 2, StreamOf::Flow(Flow::Up)));
        assert_ne!(up, draw(8, "flaky", 1, StreamOf::Flow(Flow::Up)));
        assert_ne!(up, draw(7, "other", 1, StreamOf::Flow(Flow::Up)));
    }

    #[test]
    fn ranges_and_chances_stay_in_bounds() {
        let mut rng = FaultRng::from_seed(1);
        let mut seen = [false; 5];
        for _ in 0..1000 {
            let n = rng.between(3, 7);
            assert!((3..=7).contains(&n));
            seen[(n - 3) as usize] = true;
        }
        assert!(seen.iter().all(|s| *s), "every value of the range occurs");
        assert_eq!(rng.between(5, 5), 5);
        assert!(!rng.chance(0.0));
        assert!(rng.chance(1.0));
        let hits = (0..10_000).filter(|_| rng.chance(0.25)).count();
        assert!((2000..3000).contains(&hits), "{hits}");
    }
}
