//! Runs a scenario: starts its servers, runs every actor concurrently on its own
//! task, enforces every deadline, and cleans up whatever happens.
//!
//! The runner reports only through the [`EventLog`] and the returned
//! [`ScenarioOutcome`]; it never prints or writes files.

// A failure carries everything a report needs (bytes, notes), so it is large; it is
// produced once per failed run and moved, never copied in a loop, so boxing it
// would buy nothing.
#![allow(clippy::result_large_err)]

mod actor;
pub mod outcome;
mod process;
mod signals;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub use actor::split_chunks;
use actor::{Actor, Conn};
pub use outcome::{Failure, FailureKind, ScenarioOutcome, StepRef};
pub use process::free_port;
use process::ServerProcess;
use signals::Signals;

use crate::duration::format_duration;
use crate::event::{EventKind, EventLog};
use crate::net::Recorder;
use crate::scenario::{ClientSpec, Proto, Scenario, ServerKind, ServerSpec, Step, Target};
use crate::servers::{self, Bound, ServerContext};

/// How long built-in servers get to finish their connections after the scripts end.
const SERVER_STOP_GRACE: Duration = Duration::from_secs(2);

/// Shared by every actor of one run.
pub struct RunContext {
    pub log: EventLog,
    pub signals: Signals,
    pub step_timeout: Duration,
    pub board: Board,
}

/// What each actor is doing right now, so a scenario timeout can say who was stuck
/// where.
#[derive(Default)]
pub struct Board {
    states: Mutex<BTreeMap<String, (String, Instant)>>,
}

impl Board {
    pub fn set(&self, actor: &str, doing: String) {
        let mut states = self.states.lock().unwrap_or_else(|e| e.into_inner());
        states.insert(actor.to_owned(), (doing, Instant::now()));
    }

    pub fn done(&self, actor: &str) {
        let mut states = self.states.lock().unwrap_or_else(|e| e.into_inner());
        states.remove(actor);
    }

    fn describe(&self) -> Vec<String> {
        let states = self.states.lock().unwrap_or_else(|e| e.into_inner());
        states
            .iter()
            .map(|(actor, (doing, since))| {
                format!(
                    "{actor} was at {doing}, for {}",
                    format_duration(since.elapsed())
                )
            })
            .collect()
    }
}

/// Runs one scenario once. `cancel` interrupts it (Ctrl-C); cleanup still happens.
pub async fn run_scenario(
    scenario: &Scenario,
    run: usize,
    cancel: CancellationToken,
) -> ScenarioOutcome {
    let started = std::time::Instant::now();
    let started_at = std::time::SystemTime::now();
    let context = Arc::new(RunContext {
        log: EventLog::new(),
        signals: Signals::default(),
        step_timeout: scenario.step_timeout,
        board: Board::default(),
    });
    let mut run_state = RunState {
        context: Arc::clone(&context),
        shutdown: CancellationToken::new(),
        builtin_tasks: JoinSet::new(),
        actors: JoinSet::new(),
        processes: Vec::new(),
    };
    let deadline = Instant::now() + scenario.timeout;
    let mut failure = tokio::select! {
        result = tokio::time::timeout_at(deadline, run_state.start_and_wait(scenario)) => match result {
            Ok(result) => result.err(),
            Err(_) => {
                let mut failure = Failure::new(
                    FailureKind::ScenarioTimeout,
                    format!("the scenario did not finish within its timeout of {}", format_duration(scenario.timeout)),
                );
                failure.notes = context.board.describe();
                Some(failure)
            }
        },
        _ = cancel.cancelled() => Some(Failure::new(FailureKind::Interrupted, "interrupted")),
    };
    let cleanup_problems = run_state.cleanup().await;
    if failure.is_none() {
        if let Some(problem) = cleanup_problems.first() {
            failure = Some(Failure::new(FailureKind::Cleanup, problem.clone()));
        }
    }
    let events = context.log.snapshot();
    if let Some(failure) = failure.as_mut() {
        failure.notes.extend(process_output_notes(&events));
    }
    ScenarioOutcome {
        name: scenario.name.clone(),
        path: scenario.path.clone(),
        run,
        duration: started.elapsed(),
        failure,
        events,
        started_at,
        trace: None,
    }
}

/// The last lines external servers printed, which often explain a failure.
fn process_output_notes(events: &[crate::event::Event]) -> Vec<String> {
    let lines: Vec<String> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::ProcessOutput { stream, line } => Some(format!(
                "{} {}: {line}",
                e.actor,
                if *stream == crate::event::OutputStream::Stdout {
                    "stdout"
                } else {
                    "stderr"
                }
            )),
            _ => None,
        })
        .collect();
    let skip = lines.len().saturating_sub(20);
    lines.into_iter().skip(skip).collect()
}

struct RunState {
    context: Arc<RunContext>,
    /// Stops built-in servers.
    shutdown: CancellationToken,
    builtin_tasks: JoinSet<()>,
    /// Clients and scripted servers: the scenario is over when all of them are.
    actors: JoinSet<Result<(), Failure>>,
    processes: Vec<(Arc<str>, ServerProcess)>,
}

impl RunState {
    async fn start_and_wait(&mut self, scenario: &Scenario) -> Result<(), Failure> {
        let mut addresses = BTreeMap::new();
        for server in &scenario.servers {
            let addr = self.start_server(server).await?;
            addresses.insert(server.name.clone(), addr);
        }
        for client in &scenario.clients {
            let target = match &client.connect {
                Target::Server(name) => addresses[name],
                Target::Address(addr) => *addr,
            };
            self.start_clients(client, target).await?;
        }
        while let Some(joined) = self.actors.join_next().await {
            let result = joined.unwrap_or_else(|e| {
                Err(Failure::new(
                    FailureKind::Step,
                    format!("an actor crashed: {e}"),
                ))
            });
            // The first failure decides the outcome; the other actors are stopped
            // rather than left to time out waiting for a peer that is gone.
            result?;
        }
        Ok(())
    }

    async fn start_server(&mut self, server: &ServerSpec) -> Result<SocketAddr, Failure> {
        let actor: Arc<str> = Arc::from(server.name.as_str());
        let setup = |message: String| {
            let mut failure = Failure::new(FailureKind::Setup, message);
            failure.actor = Some(server.name.clone());
            failure
        };
        match &server.kind {
            ServerKind::Address(addr) => Ok(*addr),
            ServerKind::Command(spec) => {
                let process = ServerProcess::start(
                    spec,
                    server.proto,
                    server.bind,
                    &self.context.log,
                    &actor,
                )
                .await
                .map_err(|e| {
                    setup(format!(
                        "server `{}` (line {}): {e}",
                        server.name, server.location.line
                    ))
                })?;
                let addr = process.addr;
                self.processes.push((actor, process));
                Ok(addr)
            }
            ServerKind::Builtin(config) => {
                let (bound, addr) = bind_server(server).map_err(setup)?;
                let context = ServerContext {
                    log: self.context.log.clone(),
                    actor,
                    options: server.options.clone(),
                };
                let task = servers::serve(config.clone(), bound, context, self.shutdown.clone());
                self.builtin_tasks.spawn(async move {
                    let _ = task.await;
                });
                Ok(addr)
            }
            ServerKind::Script {
                connections,
                script,
            } => {
                let (bound, addr) = bind_server(server).map_err(setup)?;
                let script = Arc::new(script.clone());
                let task = script_server(
                    Arc::clone(&self.context),
                    actor,
                    bound,
                    *connections,
                    server.options.clone(),
                    script,
                );
                self.actors.spawn(task);
                Ok(addr)
            }
        }
    }

    async fn start_clients(
        &mut self,
        client: &ClientSpec,
        target: SocketAddr,
    ) -> Result<(), Failure> {
        let script = Arc::new(client.script.clone());
        for copy in 1..=client.count {
            let name: Arc<str> = if client.count == 1 {
                Arc::from(client.name.as_str())
            } else {
                Arc::from(format!("{}#{copy}", client.name))
            };
            let conn = match client.proto {
                Proto::Tcp => Conn::NotConnected { target },
                Proto::Udp => udp_client(&self.context.log, &name, target, &client.options)
                    .map_err(|e| {
                        let mut failure = Failure::new(
                            FailureKind::Setup,
                            format!("cannot open a UDP socket: {e}"),
                        );
                        failure.actor = Some(name.to_string());
                        failure
                    })?,
            };
            let actor = Actor::new(
                name,
                conn,
                client.options.clone(),
                Arc::clone(&self.context),
            );
            let script = Arc::clone(&script);
            self.actors.spawn(async move { actor.run(&script).await });
        }
        Ok(())
    }

    /// Stops everything that was started; returns what could not be cleaned up.
    async fn cleanup(&mut self) -> Vec<String> {
        self.actors.shutdown().await;
        self.shutdown.cancel();
        let builtin = std::mem::take(&mut self.builtin_tasks);
        let mut builtin = builtin;
        if tokio::time::timeout(SERVER_STOP_GRACE, async {
            while builtin.join_next().await.is_some() {}
        })
        .await
        .is_err()
        {
            builtin.shutdown().await;
        }
        let mut problems = Vec::new();
        for (actor, mut process) in self.processes.drain(..) {
            if let Some(problem) = process.stop(&self.context.log, &actor).await {
                problems.push(problem);
            }
        }
        problems
    }
}

/// Binds a built-in or scripted server's socket and tells where it listens.
fn bind_server(server: &ServerSpec) -> Result<(Bound, SocketAddr), String> {
    let bound = servers::bind(server.proto, server.bind, &server.options)
        .map_err(|e| format!("cannot bind {} for `{}`: {e}", server.bind, server.name))?;
    let addr = bound.local_addr().map_err(|e| e.to_string())?;
    Ok((bound, addr))
}

fn udp_client(
    log: &EventLog,
    name: &Arc<str>,
    target: SocketAddr,
    options: &crate::scenario::SocketOptions,
) -> std::io::Result<Conn> {
    let bind: SocketAddr = if target.is_ipv4() {
        ([127, 0, 0, 1], 0).into()
    } else {
        (std::net::Ipv6Addr::LOCALHOST, 0).into()
    };
    let socket = std::net::UdpSocket::bind(bind)?;
    socket.connect(target)?;
    socket.set_nonblocking(true)?;
    crate::net::apply_socket_options(socket2::SockRef::from(&socket), options)?;
    let socket = tokio::net::UdpSocket::from_std(socket)?;
    let local = socket.local_addr()?;
    let recorder = Recorder {
        log: log.clone(),
        actor: Arc::clone(name),
        conn: log.next_conn_id(),
    };
    recorder.record(EventKind::UdpBound {
        conn: recorder.conn,
        local,
    });
    Ok(Conn::Udp {
        socket,
        recorder,
        local,
        peer: Some(target),
        connected: true,
    })
}

/// A scripted server: TCP accepts `connections` connections and runs the script on
/// each concurrently; UDP runs the script once on its socket.
async fn script_server(
    context: Arc<RunContext>,
    name: Arc<str>,
    bound: Bound,
    connections: usize,
    options: crate::scenario::SocketOptions,
    script: Arc<Vec<Step>>,
) -> Result<(), Failure> {
    let listener = match bound {
        Bound::Udp(socket) => {
            let local = socket
                .local_addr()
                .map_err(|e| Failure::new(FailureKind::Setup, e.to_string()))?;
            let recorder = Recorder {
                log: context.log.clone(),
                actor: Arc::clone(&name),
                conn: context.log.next_conn_id(),
            };
            recorder.record(EventKind::UdpBound {
                conn: recorder.conn,
                local,
            });
            let actor = Actor::new(
                name,
                Conn::Udp {
                    socket,
                    recorder,
                    local,
                    peer: None,
                    connected: false,
                },
                options,
                context,
            );
            return actor.run(&script).await;
        }
        Bound::Tcp(listener) => listener,
    };
    let mut sessions = JoinSet::new();
    for number in 1..=connections {
        let actor_name: Arc<str> = if connections == 1 {
            Arc::clone(&name)
        } else {
            Arc::from(format!("{name}#{number}"))
        };
        context.board.set(
            &actor_name,
            format!("accepting connection {number} of {connections}"),
        );
        let (stream, peer) = loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(pair) => break pair,
                    Err(e) => return Err(Failure::new(FailureKind::Setup, format!("`{name}` cannot accept: {e}"))),
                },
                Some(joined) = sessions.join_next(), if !sessions.is_empty() => {
                    joined.unwrap_or_else(|e| Err(Failure::new(FailureKind::Step, format!("an actor crashed: {e}"))))?;
                }
            }
        };
        let _ = crate::net::apply_socket_options(socket2::SockRef::from(&stream), &options);
        let recorder = Recorder {
            log: context.log.clone(),
            actor: Arc::clone(&actor_name),
            conn: context.log.next_conn_id(),
        };
        let local = stream
            .local_addr()
            .map_err(|e| Failure::new(FailureKind::Setup, e.to_string()))?;
        recorder.record(EventKind::Accept {
            conn: recorder.conn,
            local,
            peer,
        });
        let actor = Actor::new(
            actor_name,
            Conn::Tcp { stream, recorder },
            options.clone(),
            Arc::clone(&context),
        );
        let script = Arc::clone(&script);
        sessions.spawn(async move { actor.run(&script).await });
    }
    // No more connections are wanted: close the listener so late clients are refused
    // instead of hanging in the backlog.
    drop(listener);
    while let Some(joined) = sessions.join_next().await {
        joined.unwrap_or_else(|e| {
            Err(Failure::new(
                FailureKind::Step,
                format!("an actor crashed: {e}"),
            ))
        })?;
    }
    Ok(())
}
