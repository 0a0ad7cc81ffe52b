//! The scenarios. Each runs against the real broker and returns one [`Line`] of figures.

mod connections;
mod deliveries;
mod exactly_once;
mod postgres_restart;
mod scheduled;
mod store_hostile;

pub(crate) use self::postgres_restart::restore as restore_postgres;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};
use pubsub_amqp::AmqpConfig;

use crate::harness::{events, publish, BrokerGuard, Flow, Line, Tally};

/// Everything a scenario gets.
pub(crate) struct Ctx {
    /// The broker, directly.
    pub(crate) broker: AmqpConfig,
    /// Events for the connection-killing scenario.
    pub(crate) events: usize,
    pub(crate) guard: BrokerGuard,
}

/// A scenario: its name, what it shows, and its code.
pub(crate) struct Scenario {
    pub(crate) name: &'static str,
    pub(crate) about: &'static str,
    pub(crate) run: fn(&Ctx) -> Result<Line>,
}

pub(crate) const ALL: &[Scenario] = &[
    Scenario {
        name: "close-connections",
        about: "publisher and consumer connections force-closed several times (rabbitmqctl close_connection)",
        run: connections::close_connections,
    },
    Scenario {
        name: "broker-restart",
        about: "the broker's application stopped and started mid-stream (stop_app / start_app)",
        run: connections::broker_restart,
    },
    Scenario {
        name: "proxy-cut",
        about: "a TCP proxy between clients and broker cuts every connection, several times",
        run: connections::proxy_cut,
    },
    Scenario {
        name: "proxy-blackhole",
        about: "the proxy stops forwarding with sockets left open; clients must notice by heartbeats",
        run: connections::proxy_blackhole,
    },
    Scenario {
        name: "memory-alarm",
        about: "memory watermark 0: publishes fail after the blocked timeout, consumers drain, close is bounded",
        run: connections::memory_alarm,
    },
    Scenario {
        name: "handler-panics",
        about: "1% of events make a handler panic: the consumer goes on, exactly those reach the DLQ",
        run: deliveries::handler_panics,
    },
    Scenario {
        name: "poison",
        about: "every kind of malformed message: all dead-lettered at once, none retried",
        run: deliveries::poison,
    },
    Scenario {
        name: "hostile",
        about: "10,000 events with 50 hostile messages of every class (frames amiquip cannot read, from a raw client) mixed in: all 50 dead-lettered, none lost, no reconnect",
        run: deliveries::hostile,
    },
    Scenario {
        name: "slow-handler",
        about: "a handler slower than the heartbeat interval does not cost the connection",
        run: deliveries::slow_handler,
    },
    Scenario {
        name: "ack-timeout",
        about: "a handler holds a delivery past the broker's ack timeout: the channel is closed, the subscriber reconnects, the event comes back",
        run: deliveries::ack_timeout,
    },
    Scenario {
        name: "queue-deleted",
        about: "the queue is deleted under the consumer (server-cancelled consumer): it declares it again",
        run: deliveries::queue_deleted,
    },
    Scenario {
        name: "postgres-restart",
        about: "the event store on PostgreSQL, PostgreSQL stopped for 3 s mid-stream: nothing acked before its commit, every event stored once",
        run: postgres_restart::postgres_restart,
    },
    Scenario {
        name: "store-hostile",
        about: "10,000 events into the event store on PostgreSQL with 50 whose data the database refuses as it is (NUL, surrogates, out-of-range numbers, deep nesting, long keys): none lost, each hostile one stored faithfully or dead-lettered, no reconnect",
        run: store_hostile::store_hostile,
    },
    Scenario {
        name: "kill-before-publish",
        about: "a service with an outbox killed (kill -9) after its orders commit, before the relay publishes: started again, every order's effect applied once (SQLite, PostgreSQL)",
        run: exactly_once::kill_before_publish,
    },
    Scenario {
        name: "kill-after-publish",
        about: "killed after the relay's publish is confirmed, before its rows are marked sent: the events go out twice, the inbox applies each once (SQLite, PostgreSQL)",
        run: exactly_once::kill_after_publish,
    },
    Scenario {
        name: "kill-before-ack",
        about: "killed after the inbox handler's commit, before the ack: the redelivery is acked without running (SQLite, PostgreSQL)",
        run: exactly_once::kill_before_ack,
    },
    Scenario {
        name: "outbox-postgres",
        about: "PostgreSQL stopped for 3 s while the service commits 2,000 orders through its outbox and applies them through its inbox: every effect once",
        run: exactly_once::postgres_restart,
    },
    Scenario {
        name: "outbox-broker",
        about: "the broker stopped for 2 s while the service commits 2,000 orders through its outbox (SQLite): every effect once",
        run: exactly_once::broker_restart,
    },
    Scenario {
        name: "scheduled-tasks",
        about: "150 tasks submitted for 2, 4 and 6 s later; the only worker stops and the broker stops for 2 s while they wait; a new worker runs every one, none earlier than asked, each recorded COMPLETED",
        run: scheduled::scheduled_tasks,
    },
];

/// Publishes `n` events at `rate` on `publisher_config` while `faults` runs on another
/// thread (it gets the confirmed-so-far counter and returns the fault times), then waits
/// for every confirmed event to be consumed.
pub(crate) fn run_with_faults(
    line: &mut Line,
    flow: &Flow,
    publisher_config: &AmqpConfig,
    n: usize,
    rate: u32,
    faults: impl FnOnce(&AtomicUsize) -> Result<Vec<Instant>> + Send,
) -> Result<Tally> {
    let progress = AtomicUsize::new(0);
    let (tally, fault_times) = thread::scope(|scope| {
        let faulter = scope.spawn(|| faults(&progress));
        let tally = publish(
            publisher_config,
            &flow.exchange,
            events(n),
            rate,
            &progress,
            Duration::from_secs(90),
        );
        // Let the faulter finish even if publishing stopped early.
        progress.store(usize::MAX, Ordering::SeqCst);
        let fault_times = faulter
            .join()
            .map_err(|_| anyhow!("the fault thread panicked"))?;
        Ok::<_, anyhow::Error>((tally?, fault_times?))
    })?;
    flow.wait_consumed(&tally.confirmed, Duration::from_secs(60));
    line.count(&tally, &flow.recorder);
    line.recovery(&fault_times, &tally, &flow.recorder);
    line.notes.push(format!("{} fault(s)", fault_times.len()));
    if tally.errors > 0 {
        line.notes.push(format!(
            "{} publish error(s), published again",
            tally.errors
        ));
    }
    line.check(
        tally.confirmed.len() == n,
        format!(
            "only {} of {n} events were confirmed",
            tally.confirmed.len()
        ),
    );
    Ok(tally)
}
