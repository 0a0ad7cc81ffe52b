//! Scenarios on a 3-node cluster (`just cluster`) with quorum queues: a node stopped under
//! the subscriber, the quorum queue's leader stopped, every node restarted in turn.
//!
//! Publisher and subscriber are given the three nodes as a host list; the subscriber's queue,
//! delay queues and dead-letter queue are quorum queues. Each scenario reports lost (confirmed
//! but never handled: must be 0), the duplicates, and the recovery time.

use std::thread;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use pubsub_amqp::AmqpConfig;

use crate::harness::{wait_progress, Flow, Line, CONSUMER};
use crate::scenarios::{run_with_faults, Ctx, Scenario};

/// The cluster `scripts/cluster.sh` starts, unless `PUBSUB_CLUSTER_URL` names another.
pub(crate) const DEFAULT_URL: &str =
    "amqp://guest:guest@127.0.0.1:5673,127.0.0.1:5674,127.0.0.1:5675/%2f";

/// The nodes of the default cluster, by AMQP port.
const NODES: [(&str, u16); 3] = [
    ("pubsub1@localhost", 5673),
    ("pubsub2@localhost", 5674),
    ("pubsub3@localhost", 5675),
];

pub(crate) const CLUSTER: &[Scenario] = &[
    Scenario {
        name: "cluster-node-down",
        about: "the node the subscriber is connected to is stopped mid-stream, then started",
        run: node_down,
    },
    Scenario {
        name: "cluster-leader-down",
        about: "the node that leads the quorum queue is stopped mid-stream, then started",
        run: leader_down,
    },
    Scenario {
        name: "cluster-rolling",
        about: "all three nodes restarted one by one, mid-stream",
        run: rolling_restart,
    },
    Scenario {
        name: "cluster-tls",
        about: "amqps:// to the nodes' TLS listeners: server verified, another CA or host name refused, client certificates",
        run: tls,
    },
];

/// Where `scripts/cluster.sh` puts the CA and the client certificate.
fn tls_dir() -> std::path::PathBuf {
    std::env::var_os("PUBSUB_CLUSTER_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| "/tmp/pubsub-cluster".into())
        .join("tls")
}

/// Node 1's TLS listener (5676); node 2's (5677) requires a client certificate.
fn tls_config(port: u16, ca: &[u8]) -> Result<AmqpConfig> {
    Ok(
        AmqpConfig::from_url(&format!("amqps://guest:guest@localhost:{port}/%2f"))?
            .with_connection_attempts(1)
            .with_connection_timeout(Duration::from_secs(5))
            .with_tls(Some(
                pubsub_amqp::TlsConfig::default().root_certificate_pem(ca.to_vec()),
            )),
    )
}

/// Opens a connection, moves one message through a temporary queue, closes.
fn round_trip(config: &AmqpConfig) -> Result<()> {
    let mut connection = pubsub_amqp::Connection::open(config)?;
    anyhow::ensure!(config.tls().is_some(), "not a TLS connection");
    let channel = connection.open_channel()?;
    let queue = pubsub_testkit::unique("cluster-tls");
    channel.declare_queue(&queue, &pubsub_amqp::QueueConfig::temporary())?;
    channel.publish(
        "",
        &queue,
        b"over tls",
        &pubsub_amqp::Properties::default(),
        false,
    )?;
    let got = crate::harness::wait_for(Duration::from_secs(5), || {
        matches!(channel.get(&queue), Ok(Some(_)))
    });
    channel.delete_queue(&queue)?;
    connection.close()?;
    if got {
        Ok(())
    } else {
        Err(anyhow!("the message did not come back"))
    }
}

fn tls(_ctx: &Ctx) -> Result<Line> {
    let mut line = Line::new("cluster-tls");
    let dir = tls_dir();
    let ca = std::fs::read(dir.join("ca.pem"))
        .with_context(|| format!("reading the cluster's CA in {}", dir.display()))?;

    let verified = round_trip(&tls_config(5676, &ca)?);
    line.check(
        verified.is_ok(),
        format!("amqps with the server verified: {verified:?}"),
    );

    let other = pubsub_testkit::tls::TestCa::new("another-ca")?;
    let wrong_ca = pubsub_amqp::Connection::open(&tls_config(5676, other.cert_pem())?);
    let refused = matches!(&wrong_ca, Err(pubsub_amqp::Error::Tls { .. }));
    line.check(
        refused,
        format!("another CA must be a TLS error: {:?}", wrong_ca.err()),
    );

    let wrong_host = tls_config(5676, &ca)?.with_tls(Some(
        pubsub_amqp::TlsConfig::default()
            .root_certificate_pem(ca.clone())
            .domain("broker.example.com"),
    ));
    let wrong_host = pubsub_amqp::Connection::open(&wrong_host);
    let refused = matches!(&wrong_host, Err(pubsub_amqp::Error::Tls { .. }));
    line.check(
        refused,
        format!(
            "another host name must be a TLS error: {:?}",
            wrong_host.err()
        ),
    );

    let no_client_cert = round_trip(&tls_config(5677, &ca)?);
    line.check(
        no_client_cert.is_err(),
        "a node that requires a client certificate accepted a client without one",
    );
    // The same node with the client certificate the cluster's CA signed, given in the URL as
    // pika and RabbitMQ's URI spec do.
    let url = format!(
        "amqps://guest:guest@localhost:5677/%2f?cacertfile={}&certfile={}&keyfile={}",
        dir.join("ca.pem").display(),
        dir.join("client.pem").display(),
        dir.join("client.key").display()
    );
    let with_client_cert = AmqpConfig::from_url(&url)
        .map_err(anyhow::Error::from)
        .and_then(|c| round_trip(&c.with_connection_attempts(1)));
    line.check(
        with_client_cert.is_ok(),
        format!("a client certificate must be accepted: {with_client_cert:?}"),
    );
    line.notes.push(format!(
        "verified: {}, another CA: refused, another host: refused, no client certificate: refused, client certificate: {}",
        if verified.is_ok() { "ok" } else { "FAILED" },
        if with_client_cert.is_ok() { "ok" } else { "FAILED" }
    ));
    Ok(line)
}

/// The cluster's configuration.
pub(crate) fn config() -> Result<AmqpConfig> {
    let url = std::env::var("PUBSUB_CLUSTER_URL").unwrap_or_else(|_| DEFAULT_URL.to_owned());
    Ok(AmqpConfig::from_url(&url)?
        .with_heartbeat(Duration::from_secs(5))
        .with_connection_timeout(Duration::from_secs(3))
        .with_connection_attempts(1))
}

/// Runs `rabbitmqctl` against one node.
fn ctl(node: &str, args: &[&str]) -> Result<String> {
    let mut all = vec!["-q", "-n", node];
    all.extend_from_slice(args);
    pubsub_testkit::rabbitmqctl(&all).map_err(|e| anyhow!("{e}"))
}

/// The node whose AMQP port the connection named `name` is on.
fn node_of_connection(name: &str) -> Result<&'static str> {
    let listing = ctl(
        NODES[1].0,
        &["list_connections", "port", "client_properties"],
    )?;
    for line in listing.lines().filter(|l| l.contains(name)) {
        let port = line
            .split_whitespace()
            .next()
            .and_then(|p| p.parse::<u16>().ok());
        if let Some((node, _)) = NODES.iter().find(|(_, p)| Some(*p) == port) {
            return Ok(node);
        }
    }
    Err(anyhow!("no connection named {name} on the cluster"))
}

/// The node that leads the quorum queue `queue`.
fn leader_of(queue: &str) -> Result<&'static str> {
    let listing = ctl(NODES[1].0, &["list_queues", "name", "leader"])?;
    let leader = listing
        .lines()
        .find_map(|l| {
            let mut words = l.split_whitespace();
            (words.next() == Some(queue))
                .then(|| words.next())
                .flatten()
        })
        .ok_or_else(|| anyhow!("queue {queue} has no leader in the listing"))?;
    NODES
        .iter()
        .map(|(n, _)| *n)
        .find(|n| *n == leader)
        .ok_or_else(|| anyhow!("the leader {leader} is not a node of the cluster"))
}

/// Runs `rabbitmq-queues` against one node.
fn queues_ctl(node: &str, args: &[&str]) -> Result<()> {
    let output = std::process::Command::new("rabbitmq-queues")
        .args(["-q", "-n", node])
        .args(args)
        .output()
        .context("running rabbitmq-queues")?;
    if output.status.success() {
        Ok(())
    } else {
        Err(anyhow!(
            "rabbitmq-queues {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

/// Moves the leadership of `queue` away from `node`: removes the node's replica (the others
/// elect a leader), then adds it back as a follower.
fn move_leader_away(queue: &str, node: &str) -> Result<&'static str> {
    let other = NODES
        .iter()
        .map(|(n, _)| *n)
        .find(|n| *n != node)
        .ok_or_else(|| anyhow!("no other node"))?;
    queues_ctl(other, &["delete_member", queue, node])?;
    queues_ctl(other, &["add_member", queue, node])?;
    leader_of(queue)
}

/// Stops a node's application, waits, and starts it again; returns when it was stopped.
fn bounce(node: &str, down_for: Duration) -> Result<Instant> {
    log::info!("stopping {node}");
    ctl(node, &["stop_app"])?;
    let stopped = Instant::now();
    thread::sleep(down_for);
    log::info!("starting {node}");
    ctl(node, &["start_app"]).and_then(|_| ctl(node, &["await_startup"]))?;
    Ok(stopped)
}

/// Starts every node that is not running (a failed scenario must not leave one down).
pub(crate) fn restore() {
    for (node, _) in NODES {
        if ctl(node, &["eval", "rabbit:is_running()."])
            .map(|out| !out.contains("true"))
            .unwrap_or(false)
        {
            log::warn!("starting {node} again");
            let _ = ctl(node, &["start_app"]).and_then(|_| ctl(node, &["await_startup"]));
        }
    }
}

fn flow(cluster: &AmqpConfig, scenario: &str) -> Result<Flow> {
    Flow::start(cluster, cluster, scenario, |_| {}, |b| b.quorum(true))
}

fn finish(mut line: Line, flow: Flow) -> Result<Line> {
    let stats = flow.finish()?;
    line.notes
        .push(format!("consumer reconnects {}", stats.reconnects));
    Ok(line)
}

fn node_down(_ctx: &Ctx) -> Result<Line> {
    let cluster = config()?;
    let mut line = Line::new("cluster-node-down");
    let n = 5_000;
    let flow = flow(&cluster, "node-down")?;
    line.notes
        .push(format!("subscriber on {}", node_of_connection(CONSUMER)?));
    run_with_faults(&mut line, &flow, &cluster, n, 1_000, |progress| {
        wait_progress(progress, n * 3 / 10);
        let node = node_of_connection(CONSUMER).context("finding the subscriber's node")?;
        Ok(vec![bounce(node, Duration::from_secs(3))?])
    })?;
    finish(line, flow)
}

fn leader_down(_ctx: &Ctx) -> Result<Line> {
    let cluster = config()?;
    let mut line = Line::new("cluster-leader-down");
    let n = 5_000;
    let flow = flow(&cluster, "leader-down")?;
    let queue = flow.queue.clone();
    // The queue is declared through the subscriber's node, which then leads it: move the
    // leadership elsewhere, so that this scenario is not the node-down one again.
    let consumer_node = node_of_connection(CONSUMER)?;
    let mut leader = leader_of(&queue)?;
    if leader == consumer_node {
        leader = move_leader_away(&queue, leader)?;
    }
    line.notes
        .push(format!("subscriber on {consumer_node}, leader {leader}"));
    run_with_faults(&mut line, &flow, &cluster, n, 1_000, |progress| {
        wait_progress(progress, n * 3 / 10);
        let leader = leader_of(&queue).context("finding the queue's leader")?;
        log::info!("the queue's leader is {leader}");
        Ok(vec![bounce(leader, Duration::from_secs(3))?])
    })?;
    finish(line, flow)
}

fn rolling_restart(_ctx: &Ctx) -> Result<Line> {
    let cluster = config()?;
    let mut line = Line::new("cluster-rolling");
    let n = 6_000;
    let flow = flow(&cluster, "rolling")?;
    run_with_faults(&mut line, &flow, &cluster, n, 500, |progress| {
        let mut times = Vec::new();
        for (i, (node, _)) in NODES.iter().enumerate() {
            wait_progress(progress, n * (i + 1) / 5);
            times.push(bounce(node, Duration::from_secs(2))?);
            // Let the restarted node catch up before the next one goes.
            thread::sleep(Duration::from_secs(2));
        }
        Ok(times)
    })?;
    finish(line, flow)
}
