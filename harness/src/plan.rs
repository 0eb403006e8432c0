//! The plan stage: a loaded scenario becomes a fully resolved run, so the runner has
//! nothing left to look up or guess.
//!
//! ```text
//! Scenario (model + spans) --plan::plan--> Plan --runner::run_plan--> outcome + events
//! ```
//!
//! Planning binds every socket wirecheck owns (built-in and scripted servers listen
//! before any client exists, so a client can never race its server), picks the
//! port of each `command` server, resolves every client's target to an address,
//! and counts the descriptors each client copy will hold. It is synchronous and
//! does no I/O beyond binding, so a plan that fails does so before anything runs.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::proxy::ProxyConfig;
use crate::scenario::{CommandSpec, Location, Scenario, ServerKind, Target};
use crate::servers::{self, Bound, BuiltinConfig};
use crate::vocab::{Proto, SocketOptions};

/// A script, shared by every copy and connection that runs it.
pub use crate::scenario::Script;

/// One run, resolved.
pub struct Plan {
    pub name: String,
    pub path: PathBuf,
    pub timeout: Duration,
    pub step_timeout: Duration,
    /// The scenario's `unread` policy.
    pub unread: crate::scenario::UnreadPolicy,
    /// Which step captures each variable (see [`crate::scenario::Scenario::capturers`]).
    pub capturers: Arc<std::collections::HashMap<String, String>>,
    pub servers: Vec<PlannedServer>,
    /// Fault proxies, their listeners bound, so their faults are in place before
    /// the first client connects.
    pub proxies: Vec<PlannedProxy>,
    pub clients: Vec<PlannedClient>,
    /// Client programs, started once every server is ready.
    pub programs: Vec<crate::scenario::ClientProgram>,
}

/// A proxy of the plan: its bound listener and its resolved configuration (the
/// upstream address and the seed in use).
pub struct PlannedProxy {
    pub location: Location,
    pub proto: Proto,
    /// Where clients reach it.
    pub addr: SocketAddr,
    pub bound: Bound,
    pub config: ProxyConfig,
}

/// A server of the plan, with its address known.
pub struct PlannedServer {
    pub name: Arc<str>,
    pub location: Location,
    pub proto: Proto,
    /// Where clients reach it.
    pub addr: SocketAddr,
    pub options: SocketOptions,
    pub kind: PlannedServerKind,
}

pub enum PlannedServerKind {
    /// A reference server on its already-bound socket.
    Builtin { config: BuiltinConfig, bound: Bound },
    /// A scripted server on its already-bound socket.
    Script {
        connections: usize,
        script: Script,
        bound: Bound,
    },
    /// A program to start; its port is `addr`'s.
    Command(CommandSpec),
    /// Already running at `addr`.
    Address,
}

impl PlannedServer {
    /// Whether the server's sockets live in this process (so each client connection
    /// to it costs two descriptors here, not one).
    pub fn in_process(&self) -> bool {
        matches!(
            self.kind,
            PlannedServerKind::Builtin { .. } | PlannedServerKind::Script { .. }
        )
    }
}

/// A client declaration, resolved; it runs `count` copies.
pub struct PlannedClient {
    pub name: String,
    pub count: usize,
    pub proto: Proto,
    pub options: SocketOptions,
    pub target: SocketAddr,
    /// Descriptors each copy holds while it runs.
    pub descriptors_each: u32,
    /// At most this many copies run at once. Against a server of this process it
    /// stays below the listen backlog: copies connect faster than any accept loop,
    /// and a connection the full backlog drops costs its client a one-second SYN
    /// retransmission.
    pub max_in_flight: usize,
    pub script: Script,
}

/// Why a scenario could not be planned.
#[derive(Debug, Clone)]
pub struct PlanError {
    /// The server that could not be set up.
    pub actor: String,
    pub message: String,
}

/// Resolves `scenario` into a plan, binding the sockets of the servers wirecheck
/// runs itself. Must be called inside the tokio runtime (sockets register with it).
pub fn plan(scenario: &Scenario) -> Result<Plan, PlanError> {
    let mut servers = Vec::with_capacity(scenario.servers.len());
    for server in &scenario.servers {
        let error = |message: String| PlanError {
            actor: server.name.clone(),
            message,
        };
        let bind = |server: &crate::scenario::ServerSpec| {
            let bound = servers::bind(server.proto, server.bind, &server.options).map_err(|e| {
                error(format!(
                    "cannot bind {} for `{}`: {e}",
                    server.bind, server.name
                ))
            })?;
            let addr = bound.local_addr().map_err(|e| error(e.to_string()))?;
            Ok::<_, PlanError>((bound, addr))
        };
        let (addr, kind) = match &server.kind {
            ServerKind::Address(addr) => (*addr, PlannedServerKind::Address),
            ServerKind::Builtin(config) => {
                let (bound, addr) = bind(server)?;
                (
                    addr,
                    PlannedServerKind::Builtin {
                        config: config.clone(),
                        bound,
                    },
                )
            }
            ServerKind::Script {
                connections,
                script,
            } => {
                let (bound, addr) = bind(server)?;
                (
                    addr,
                    PlannedServerKind::Script {
                        connections: *connections,
                        script: Arc::clone(script),
                        bound,
                    },
                )
            }
            ServerKind::Command(spec) => {
                let port = if server.bind.port() == 0 {
                    free_port(server.proto, server.bind.ip())
                        .map_err(|e| error(format!("cannot find a free port: {e}")))?
                } else {
                    server.bind.port()
                };
                (
                    SocketAddr::new(server.bind.ip(), port),
                    PlannedServerKind::Command(spec.clone()),
                )
            }
        };
        servers.push(PlannedServer {
            name: Arc::from(server.name.as_str()),
            location: server.location.clone(),
            proto: server.proto,
            addr,
            options: server.options.clone(),
            kind,
        });
    }
    let proxies = plan_proxies(scenario, &servers)?;
    let clients = scenario
        .clients
        .iter()
        .map(|client| {
            let target = resolve(&client.connect, &servers, &proxies);
            let in_process = held_here(&client.connect, scenario, &servers) > 0;
            PlannedClient {
                name: client.name.clone(),
                count: client.count,
                proto: client.proto,
                options: client.options.clone(),
                target,
                // A TCP connection to a server of this process holds two descriptors.
                descriptors_each: if client.proto == Proto::Tcp {
                    1 + held_here(&client.connect, scenario, &servers)
                } else {
                    1
                },
                max_in_flight: if in_process {
                    servers::LISTEN_BACKLOG as usize * 3 / 4
                } else {
                    usize::MAX
                },
                script: Arc::clone(&client.script),
            }
        })
        .collect();
    Ok(Plan {
        name: scenario.name.clone(),
        path: scenario.path.clone(),
        timeout: scenario.timeout,
        step_timeout: scenario.step_timeout,
        unread: scenario.unread,
        capturers: Arc::clone(&scenario.capturers),
        servers,
        proxies,
        clients,
        programs: scenario.programs.clone(),
    })
}

/// The address of a client's or proxy's target. The loader guarantees that every
/// name exists.
fn resolve(target: &Target, servers: &[PlannedServer], proxies: &[PlannedProxy]) -> SocketAddr {
    match target {
        Target::Server(name) => {
            servers
                .iter()
                .find(|s| &*s.name == name.as_str())
                .expect("the loader checked every server name")
                .addr
        }
        Target::Proxy(name) => {
            proxies
                .iter()
                .find(|p| &*p.config.name == name.as_str())
                .expect("the loader checked every proxy name")
                .addr
        }
        Target::Address(addr) => *addr,
    }
}

/// Descriptors this process holds for one TCP connection to `target`, beside the
/// client's own: one at an in-process server, two at each proxy on the way (its
/// accepted and its upstream connection).
fn held_here(target: &Target, scenario: &Scenario, servers: &[PlannedServer]) -> u32 {
    let mut held = 0;
    let mut target = target;
    // A chain is at most as long as the proxies (the loader refused loops).
    for _ in 0..=scenario.proxies.len() {
        match target {
            Target::Server(name) => {
                let in_process = servers
                    .iter()
                    .find(|s| &*s.name == name.as_str())
                    .is_some_and(PlannedServer::in_process);
                return held + u32::from(in_process);
            }
            Target::Address(_) => return held,
            Target::Proxy(name) => {
                held += 2;
                match scenario.proxies.iter().find(|p| &p.name == name) {
                    Some(proxy) => target = &proxy.to,
                    None => return held,
                }
            }
        }
    }
    held
}

/// Binds every proxy's listener, then resolves each one's upstream (a proxy may
/// forward to one declared after it) and its seed: the proxy's own, or one seed
/// drawn for this run and shared by every proxy that has none.
fn plan_proxies(
    scenario: &Scenario,
    servers: &[PlannedServer],
) -> Result<Vec<PlannedProxy>, PlanError> {
    let run_seed = crate::proxy::random_seed();
    let mut proxies = Vec::with_capacity(scenario.proxies.len());
    for proxy in &scenario.proxies {
        let error = |message: String| PlanError {
            actor: proxy.name.clone(),
            message,
        };
        let bound =
            servers::bind(proxy.proto, proxy.bind, &SocketOptions::default()).map_err(|e| {
                error(format!(
                    "cannot bind {} for proxy `{}`: {e}",
                    proxy.bind, proxy.name
                ))
            })?;
        let addr = bound.local_addr().map_err(|e| error(e.to_string()))?;
        proxies.push(PlannedProxy {
            location: proxy.location.clone(),
            proto: proxy.proto,
            addr,
            bound,
            config: ProxyConfig {
                name: Arc::from(proxy.name.as_str()),
                // Filled in below, once every proxy has its address.
                upstream: addr,
                seed: proxy.seed.unwrap_or(run_seed),
                faults: proxy.faults.clone(),
            },
        });
    }
    let upstreams: Vec<SocketAddr> = scenario
        .proxies
        .iter()
        .map(|proxy| resolve(&proxy.to, servers, &proxies))
        .collect();
    for (proxy, upstream) in proxies.iter_mut().zip(upstreams) {
        proxy.config.upstream = upstream;
    }
    Ok(proxies)
}

/// Picks a free loopback port for a program by binding port 0 and releasing it.
/// Another process could take it in between; the program's readiness check then
/// fails with a clear message.
pub fn free_port(proto: Proto, ip: IpAddr) -> std::io::Result<u16> {
    let probe = SocketAddr::new(ip, 0);
    Ok(match proto {
        Proto::Tcp => std::net::TcpListener::bind(probe)?.local_addr()?.port(),
        Proto::Udp => std::net::UdpSocket::bind(probe)?.local_addr()?.port(),
    })
}
