//! `wirecheck proxy`: one fault proxy outside any scenario, in front of any
//! program, logging each fault action to standard output until SIGINT or SIGTERM.

use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::str::FromStr;

use clap::Args;
use tokio_util::sync::CancellationToken;

use super::{ServeProto, EXIT_FAILED, EXIT_PASSED, EXIT_USAGE};
use crate::duration::format_duration;
use crate::event::{Event, EventKind, EventStream, Interest, RunSubscriber};
use crate::proxy::{self, ProxyConfig};
use crate::scenario::load::fault_from_text;
use crate::servers;
use crate::vocab::{Proto, SocketOptions};

#[derive(Debug, Args)]
pub struct ProxyArgs {
    /// Where clients connect: a loopback HOST:PORT (port 0 picks a free one, printed
    /// at start).
    #[arg(long, value_name = "ADDR")]
    pub listen: String,
    /// Where the proxy forwards: a loopback HOST:PORT.
    #[arg(long, value_name = "ADDR")]
    pub to: String,
    /// Transport.
    #[arg(long, value_enum, default_value_t = ServeProto::Tcp)]
    pub proto: ServeProto,
    /// The seed of every fault decision (default: random, printed at start).
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,
    /// A fault, as in a scenario's `faults` list: `slice=1,delay=1ms`,
    /// `latency=20ms,jitter=5ms,direction=down`, `drop=0.1`. Repeat for more;
    /// they apply in order.
    #[arg(long = "fault", value_name = "SPEC")]
    pub faults: Vec<String>,
}

/// A loopback `HOST:PORT` (`localhost` is 127.0.0.1); no name is looked up.
fn loopback(flag: &str, text: &str) -> Result<SocketAddr, String> {
    let addr = match SocketAddr::from_str(text) {
        Ok(addr) => addr,
        Err(_) => match text.rsplit_once(':') {
            Some((host, port)) if host.eq_ignore_ascii_case("localhost") => {
                let port = port
                    .parse::<u16>()
                    .map_err(|_| format!("{flag} `{text}`: `{port}` is not a port"))?;
                SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port)
            }
            _ => {
                return Err(format!(
                    "{flag} `{text}` is not a loopback HOST:PORT (e.g. 127.0.0.1:9000, [::1]:9000, localhost:9000)"
                ))
            }
        },
    };
    if !addr.ip().is_loopback() {
        return Err(format!(
            "{flag} {addr} is not a loopback address; wirecheck only sends traffic on this machine"
        ));
    }
    Ok(addr)
}

pub async fn proxy(args: ProxyArgs) -> i32 {
    let proto = Proto::from(args.proto);
    let (listen, upstream) = match (
        loopback("--listen", &args.listen),
        loopback("--to", &args.to),
    ) {
        (Ok(listen), Ok(upstream)) => (listen, upstream),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("error: {e}");
            return EXIT_USAGE;
        }
    };
    let mut faults = Vec::new();
    for spec in &args.faults {
        match fault_from_text(spec, proto) {
            Ok(fault) => faults.push(fault),
            Err(rendered) => {
                eprint!("{rendered}");
                return EXIT_USAGE;
            }
        }
    }
    let bound = match servers::bind(proto, listen, &SocketOptions::default()) {
        Ok(bound) => bound,
        Err(e) => {
            eprintln!("error: cannot listen on {listen}: {e}");
            return EXIT_FAILED;
        }
    };
    let listening = bound.local_addr().map_or(listen, |a| a);
    let seed = args.seed.unwrap_or_else(proxy::random_seed);
    {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(
            out,
            "proxy listening on {listening} -> {upstream} ({}), seed {seed}, {} fault(s); SIGINT or SIGTERM stops it",
            proto.name(),
            faults.len()
        );
        let _ = out.flush();
    }
    let config = ProxyConfig {
        name: "proxy".into(),
        upstream,
        seed,
        faults,
    };
    let log_lines = FaultLog;
    let (stream, receiver) = EventStream::new(log_lines.interest());
    let printer = std::thread::spawn(move || {
        let mut subscribers: [Box<dyn RunSubscriber>; 1] = [Box::new(log_lines)];
        crate::event::feed(receiver, &mut subscribers)
    });
    let shutdown = CancellationToken::new();
    tokio::spawn({
        let shutdown = shutdown.clone();
        async move {
            stop_signal().await;
            shutdown.cancel();
        }
    });
    proxy::serve(bound, config, stream.clone(), shutdown).await;
    stream.close();
    let _ = tokio::task::spawn_blocking(move || printer.join()).await;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "proxy stopped");
    let _ = out.flush();
    EXIT_PASSED
}

/// SIGINT or SIGTERM, whichever comes first.
async fn stop_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Prints connections and fault actions, one line each, as they happen.
struct FaultLog;

impl RunSubscriber for FaultLog {
    fn interest(&self) -> Interest {
        Interest {
            events: true,
            payloads: false,
        }
    }

    fn event(&mut self, event: &Event) {
        let line = match &event.kind {
            EventKind::Accept { peer, .. } => format!("connection from {peer}"),
            EventKind::ConnectFailed { peer, error } => {
                format!("cannot reach {peer} ({error}); the client's connection is reset")
            }
            EventKind::Fault {
                flow,
                fault,
                action,
                ..
            } => format!("{} {fault}: {action}", flow.name()),
            EventKind::PeerReset { .. } => "a peer reset its connection".into(),
            _ => return,
        };
        let mut out = std::io::stdout().lock();
        let _ = writeln!(
            out,
            "{:>10} {} {line}",
            format_duration(event.at),
            event.actor
        );
        let _ = out.flush();
    }
}
