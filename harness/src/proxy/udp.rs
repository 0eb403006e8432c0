//! The UDP socket loop of a proxy. Each client address is a flow, numbered from 1
//! in the order of its first datagram: it gets its own upstream socket (so replies
//! find their way back), its own task, and its own pipelines and RNG streams.
//!
//! Memory is bounded: at most [`MAX_FLOWS`] flows, at most [`FLOW_QUEUE`]
//! datagrams waiting for a flow's task, at most
//! [`super::datagram::MAX_QUEUED_DATAGRAMS`] held by each pipeline; a datagram over
//! a bound is dropped and the drop is an event, as a full router queue would drop
//! it.

use std::cell::RefCell;
use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::datagram::{Datagram, DatagramPipeline};
use super::fault::Flow;
use super::rng::{FaultRng, StreamOf};
use super::ProxyConfig;
use crate::event::{ConnId, EventKind, EventStream};

/// At most this many client addresses at once.
pub const MAX_FLOWS: usize = 4096;
/// At most this many datagrams wait for a flow's task.
pub const FLOW_QUEUE: usize = 256;
const MAX_DATAGRAM: usize = 65_536;

thread_local! {
    static SCRATCH: RefCell<Vec<u8>> = RefCell::new(vec![0; MAX_DATAGRAM]);
}

/// Where a proxy's own listening socket records.
#[derive(Clone)]
struct Listen {
    socket: Arc<UdpSocket>,
    local: SocketAddr,
    conn: ConnId,
    actor: Arc<str>,
    log: EventStream,
}

/// Runs a UDP proxy on `socket` until `shutdown`.
pub async fn run(
    socket: UdpSocket,
    config: Arc<ProxyConfig>,
    log: EventStream,
    shutdown: CancellationToken,
) {
    let Ok(local) = socket.local_addr() else {
        return;
    };
    let listen = Listen {
        socket: Arc::new(socket),
        local,
        conn: log.next_conn_id(),
        actor: Arc::clone(&config.name),
        log: log.clone(),
    };
    log.record(
        &listen.actor,
        EventKind::UdpBound {
            conn: listen.conn,
            local,
        },
    );
    let base = Instant::now();
    let mut flows: HashMap<SocketAddr, mpsc::Sender<Bytes>> = HashMap::new();
    let mut tasks = JoinSet::new();
    let mut number = 0u64;
    loop {
        let received = tokio::select! {
            _ = shutdown.cancelled() => break,
            Some(_) = tasks.join_next(), if !tasks.is_empty() => continue,
            received = receive(&listen.socket) => received,
        };
        let Ok((data, from)) = received else {
            continue;
        };
        log.record(
            &listen.actor,
            EventKind::DatagramReceived {
                conn: listen.conn,
                from,
                to: local,
                data: log.payload_shared(&data),
            },
        );
        let sender = match flows.get(&from) {
            Some(sender) => sender.clone(),
            None if flows.len() >= MAX_FLOWS => {
                drop_note(
                    &listen,
                    from,
                    &data,
                    "the proxy already serves its most client addresses",
                );
                continue;
            }
            None => {
                number += 1;
                let (sender, receiver) = mpsc::channel(FLOW_QUEUE);
                match flow_task(
                    Arc::clone(&config),
                    listen.clone(),
                    from,
                    number,
                    base,
                    receiver,
                    shutdown.clone(),
                ) {
                    Ok(task) => {
                        tasks.spawn(task);
                    }
                    Err(error) => {
                        drop_note(
                            &listen,
                            from,
                            &data,
                            &format!("no upstream socket: {error}"),
                        );
                        continue;
                    }
                }
                flows.insert(from, sender.clone());
                sender
            }
        };
        if sender.try_send(data.clone()).is_err() {
            drop_note(&listen, from, &data, "its flow's queue is full");
        }
    }
    tasks.shutdown().await;
}

fn drop_note(listen: &Listen, from: SocketAddr, data: &Bytes, why: &str) {
    listen.log.record(
        &listen.actor,
        EventKind::Fault {
            conn: listen.conn,
            flow: Flow::Up,
            fault: "queue",
            action: format!("dropped a {}-byte datagram from {from}: {why}", data.len()),
            discarded: true,
        },
    );
}

async fn receive(socket: &UdpSocket) -> io::Result<(Bytes, SocketAddr)> {
    loop {
        socket.readable().await?;
        let received = SCRATCH.with(|scratch| {
            let mut scratch = scratch.borrow_mut();
            socket
                .try_recv_from(&mut scratch)
                .map(|(n, from)| (Bytes::copy_from_slice(&scratch[..n]), from))
        });
        match received {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            other => return other,
        }
    }
}

async fn receive_connected(socket: &UdpSocket) -> io::Result<Bytes> {
    loop {
        socket.readable().await?;
        let received = SCRATCH.with(|scratch| {
            let mut scratch = scratch.borrow_mut();
            socket
                .try_recv(&mut scratch)
                .map(|n| Bytes::copy_from_slice(&scratch[..n]))
        });
        match received {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            other => return other,
        }
    }
}

/// The task of one client address: its upstream socket and both pipelines.
fn flow_task(
    config: Arc<ProxyConfig>,
    listen: Listen,
    client: SocketAddr,
    number: u64,
    base: Instant,
    mut from_client: mpsc::Receiver<Bytes>,
    shutdown: CancellationToken,
) -> io::Result<impl std::future::Future<Output = ()>> {
    let bind: SocketAddr = if config.upstream.is_ipv4() {
        ([127, 0, 0, 1], 0).into()
    } else {
        (std::net::Ipv6Addr::LOCALHOST, 0).into()
    };
    let std_socket = std::net::UdpSocket::bind(bind)?;
    std_socket.connect(config.upstream)?;
    std_socket.set_nonblocking(true)?;
    let upstream = UdpSocket::from_std(std_socket)?;
    let upstream_local = upstream.local_addr()?;
    let actor: Arc<str> = Arc::from(format!("{}#{number}", config.name));
    let log = listen.log.clone();
    let upstream_conn = log.next_conn_id();
    log.record(
        &actor,
        EventKind::UdpBound {
            conn: upstream_conn,
            local: upstream_local,
        },
    );
    // `connections` and `probability` choose the faults of this flow, as they do
    // for a TCP connection.
    let mut choices = FaultRng::new(config.seed, &config.name, number, StreamOf::Choices);
    let mut kinds: [Vec<_>; 2] = [Vec::new(), Vec::new()];
    for fault in &config.faults {
        if fault
            .connections
            .as_ref()
            .is_some_and(|list| !list.contains(&number))
        {
            continue;
        }
        if !choices.chance(fault.probability) {
            continue;
        }
        for flow in [Flow::Up, Flow::Down] {
            if fault.direction.covers(flow) {
                kinds[flow as usize].push(fault.kind.clone());
            }
        }
    }
    let notes = log.enabled();
    let stream = |flow| FaultRng::new(config.seed, &config.name, number, StreamOf::Flow(flow));
    let mut up = DatagramPipeline::new(&kinds[0], stream(Flow::Up), notes);
    let mut down = DatagramPipeline::new(&kinds[1], stream(Flow::Down), notes);
    Ok(async move {
        // What the faults did to a datagram: recorded on the socket that sends it,
        // or, for one thrown away, on the socket it arrived at (its trace comment
        // goes on the datagram that brought it).
        let note = |flow: Flow, datagram: &Datagram| {
            let discarded = datagram.data.is_none();
            let conn = match (flow, discarded) {
                (Flow::Up, false) | (Flow::Down, true) => upstream_conn,
                (Flow::Up, true) | (Flow::Down, false) => listen.conn,
            };
            for note in &datagram.notes {
                log.record(
                    &actor,
                    EventKind::Fault {
                        conn,
                        flow,
                        fault: note.fault,
                        action: note.action.clone(),
                        discarded,
                    },
                );
            }
        };
        loop {
            let now = base.elapsed();
            up.advance(now);
            down.advance(now);
            while let Some(datagram) = up.pop_due(now) {
                note(Flow::Up, &datagram);
                if let Some(data) = datagram.data {
                    if upstream.send(&data).await.is_ok() {
                        log.record(
                            &actor,
                            EventKind::DatagramSent {
                                conn: upstream_conn,
                                from: upstream_local,
                                to: config.upstream,
                                data: log.payload_shared(&data),
                            },
                        );
                    }
                }
            }
            while let Some(datagram) = down.pop_due(now) {
                note(Flow::Down, &datagram);
                if let Some(data) = datagram.data {
                    if listen.socket.send_to(&data, client).await.is_ok() {
                        log.record(
                            &listen.actor,
                            EventKind::DatagramSent {
                                conn: listen.conn,
                                from: listen.local,
                                to: client,
                                data: log.payload_shared(&data),
                            },
                        );
                    }
                }
            }
            let wake = [up.next_wake(), down.next_wake()]
                .into_iter()
                .flatten()
                .min();
            tokio::select! {
                _ = shutdown.cancelled() => return,
                received = from_client.recv() => match received {
                    Some(data) => up.push(base.elapsed(), data),
                    None => return,
                },
                received = receive_connected(&upstream) => {
                    // A refused send (nothing listens upstream) shows up as an error
                    // here; the datagram is lost, as it would be without the proxy.
                    if let Ok(data) = received {
                        log.record(
                            &actor,
                            EventKind::DatagramReceived {
                                conn: upstream_conn,
                                from: config.upstream,
                                to: upstream_local,
                                data: log.payload_shared(&data),
                            },
                        );
                        down.push(base.elapsed(), data);
                    }
                }
                _ = tokio::time::sleep_until(base + wake.unwrap_or_default()), if wake.is_some() => {}
            }
        }
    })
}
