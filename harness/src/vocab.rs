//! The shared vocabulary of wirecheck: the few plain types that the scenario model,
//! the plan, the runner, the servers, the event stream and the reporters all speak.
//! This module is a leaf: it imports nothing from the rest of the crate, so every
//! layer may use it without reaching into another layer.

use std::time::Duration;

use serde::Serialize;

/// Transport protocol of an actor.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    strum::EnumString,
    strum::IntoStaticStr,
    strum::VariantNames,
)]
#[serde(rename_all = "lowercase")]
#[strum(serialize_all = "lowercase")]
pub enum Proto {
    Tcp,
    Udp,
}

impl Proto {
    /// The name as written in scenario files and shown in reports (`tcp`, `udp`).
    pub fn name(self) -> &'static str {
        self.into()
    }
}

/// Socket options an actor applies to its sockets. `None` leaves the OS default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SocketOptions {
    pub nodelay: Option<bool>,
    pub recv_buffer: Option<usize>,
    pub send_buffer: Option<usize>,
    /// `Some(ZERO)` turns `close` into a reset.
    pub linger: Option<Duration>,
}

/// Which half (or both) of a TCP connection a `shutdown` closes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ShutdownHow {
    Write,
    Read,
    Both,
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use strum::VariantNames;

    use super::*;

    #[test]
    fn proto_names_round_trip() {
        for name in Proto::VARIANTS {
            assert_eq!(Proto::from_str(name).unwrap().name(), *name);
        }
        assert_eq!(Proto::VARIANTS, &["tcp", "udp"]);
        assert!(Proto::from_str("TCP").is_err());
    }
}
