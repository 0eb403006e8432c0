//! Fault proxies: a proxy sits between clients and a server and makes the network
//! misbehave, the same way on every run with the same seed.
//!
//! ```text
//! client --> [listener] --up pipeline--> upstream (server, proxy or host:port)
//!        <--            <-down pipeline--
//! ```
//!
//! A fault is a pure transform of a byte stream ([`pipeline`]) or of a datagram
//! sequence ([`datagram`]), driven by a seeded RNG ([`rng`]) and a clock passed in;
//! [`tcp`] and [`udp`] are the thin socket loops around them.

pub mod datagram;
pub mod fault;
pub mod pipeline;
pub mod rng;
pub mod tcp;
pub mod udp;

pub use fault::{Direction, FaultKind, FaultSpec, Flow};

use std::net::SocketAddr;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::event::{EventKind, EventStream};
use crate::servers::Bound;

/// A proxy, resolved: where it forwards, its faults, and the seed they follow.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// Its name: events of connection N come from actor `NAME#N`.
    pub name: Arc<str>,
    pub upstream: SocketAddr,
    pub seed: u64,
    pub faults: Vec<FaultSpec>,
}

/// Runs a proxy on its bound socket until `shutdown`, recording every fault action
/// into `log`. A TCP proxy closes every connection when it stops.
pub async fn serve(
    bound: Bound,
    config: ProxyConfig,
    log: EventStream,
    shutdown: CancellationToken,
) {
    let config = Arc::new(config);
    if let Ok(listen) = bound.local_addr() {
        log.record(
            &config.name,
            EventKind::ProxyStarted {
                listen,
                upstream: config.upstream,
                seed: config.seed,
            },
        );
    }
    match bound {
        Bound::Tcp(listener) => tcp::run(listener, config, log, shutdown).await,
        Bound::Udp(socket) => udp::run(socket, config, log, shutdown).await,
    }
}

/// A seed for a proxy that was given none: different on every run, and printed in
/// every report so the run can be replayed.
pub fn random_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    hasher.write_u32(std::process::id());
    // Seeds people retype stay short: 9 decimal digits are plenty of runs.
    hasher.finish() % 1_000_000_000
}
