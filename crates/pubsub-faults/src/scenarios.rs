//! The scenarios. Each runs against the real broker and returns one [`Line`] of figures.

mod exactly_once;
mod postgres_restart;
mod store_hostile;

pub(crate) use self::postgres_restart::restore as restore_postgres;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use pubsub_amqp::{AmqpConfig, Connection, Properties};
use pubsub_core::{handler_fn, json, Event};
use pubsub_publisher::EventPublisher;
use pubsub_testkit::raw::{hostile::every_class, RawPublisher};
use pubsub_testkit::FaultProxy;

use crate::harness::{
    events, publish, publish_beside, wait_for, wait_progress, BrokerGuard, Flow, Line, Tally,
    CONSUMER, PUBLISHER,
};

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
        run: close_connections,
    },
    Scenario {
        name: "broker-restart",
        about: "the broker's application stopped and started mid-stream (stop_app / start_app)",
        run: broker_restart,
    },
    Scenario {
        name: "proxy-cut",
        about: "a TCP proxy between clients and broker cuts every connection, several times",
        run: proxy_cut,
    },
    Scenario {
        name: "proxy-blackhole",
        about: "the proxy stops forwarding with sockets left open; clients must notice by heartbeats",
        run: proxy_blackhole,
    },
    Scenario {
        name: "memory-alarm",
        about: "memory watermark 0: publishes fail after the blocked timeout, consumers drain, close is bounded",
        run: memory_alarm,
    },
    Scenario {
        name: "handler-panics",
        about: "1% of events make a handler panic: the consumer goes on, exactly those reach the DLQ",
        run: handler_panics,
    },
    Scenario {
        name: "poison",
        about: "every kind of malformed message: all dead-lettered at once, none retried",
        run: poison,
    },
    Scenario {
        name: "hostile",
        about: "10,000 events with 50 hostile messages of every class (frames amiquip cannot read, from a raw client) mixed in: all 50 dead-lettered, none lost, no reconnect",
        run: hostile,
    },
    Scenario {
        name: "slow-handler",
        about: "a handler slower than the heartbeat interval does not cost the connection",
        run: slow_handler,
    },
    Scenario {
        name: "ack-timeout",
        about: "a handler holds a delivery past the broker's ack timeout: the channel is closed, the subscriber reconnects, the event comes back",
        run: ack_timeout,
    },
    Scenario {
        name: "queue-deleted",
        about: "the queue is deleted under the consumer (server-cancelled consumer): it declares it again",
        run: queue_deleted,
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

/// Injects `count` faults spread evenly over the publishing of `n` events; returns when each
/// fault was in place (once `fault` returned).
fn repeat_faults(
    progress: &AtomicUsize,
    n: usize,
    count: usize,
    mut fault: impl FnMut(usize) -> Result<()>,
) -> Result<Vec<Instant>> {
    let mut times = Vec::new();
    for i in 0..count {
        wait_progress(progress, n * (i + 1) / (count + 1));
        if progress.load(Ordering::SeqCst) == usize::MAX {
            break; // publishing is over
        }
        fault(i)?;
        times.push(Instant::now());
    }
    Ok(times)
}

fn close_connections(ctx: &Ctx) -> Result<Line> {
    let mut line = Line::new("close-connections");
    let n = ctx.events;
    let flow = Flow::start(&ctx.broker, &ctx.broker, "close", |_| {}, |b| b)?;
    let targets = [
        CONSUMER, PUBLISHER, CONSUMER, PUBLISHER, CONSUMER, PUBLISHER,
    ];
    let consumer_closes = AtomicUsize::new(0);
    run_with_faults(&mut line, &flow, &ctx.broker, n, 1_000, |progress| {
        repeat_faults(progress, n, targets.len(), |i| {
            let target = targets[i];
            let closed = pubsub_testkit::close_connections_named(target).map_err(|e| anyhow!(e))?;
            log::info!("closed {closed} connection(s) named {target}");
            if target == CONSUMER && closed > 0 {
                consumer_closes.fetch_add(1, Ordering::SeqCst);
            }
            Ok(())
        })
    })?;
    // The last close can land as the flow ends: give the consumer its reconnect (bounded)
    // before it is stopped, so that every close is answered by a reconnect.
    let closes = consumer_closes.load(Ordering::SeqCst) as u64;
    wait_for(Duration::from_secs(15), || {
        flow.stats().reconnects >= closes
    });
    let stats = flow.finish()?;
    line.reconnects(
        &stats,
        closes.max(1),
        "the consumer did not reconnect after each of its connections was closed",
    );
    Ok(line)
}

fn broker_restart(ctx: &Ctx) -> Result<Line> {
    let mut line = Line::new("broker-restart");
    let n = 5_000;
    let flow = Flow::start(&ctx.broker, &ctx.broker, "restart", |_| {}, |b| b)?;
    run_with_faults(&mut line, &flow, &ctx.broker, n, 1_000, |progress| {
        wait_progress(progress, n * 3 / 10);
        pubsub_testkit::rabbitmqctl(&["-q", "stop_app"]).map_err(|e| anyhow!(e))?;
        let t = Instant::now(); // the broker is down once stop_app returns
        thread::sleep(Duration::from_secs(2));
        let started = pubsub_testkit::rabbitmqctl(&["-q", "start_app"])
            .and_then(|_| pubsub_testkit::rabbitmqctl(&["-q", "await_startup"]));
        if let Err(e) = started {
            ctx.guard.restore();
            return Err(anyhow!(e));
        }
        Ok(vec![t])
    })?;
    let stats = flow.finish()?;
    line.reconnects(&stats, 0, "");
    Ok(line)
}

/// The broker's settings, reached through `proxy`.
fn via(proxy: &FaultProxy, broker: &AmqpConfig) -> AmqpConfig {
    AmqpConfig::new(&proxy.addr().ip().to_string())
        .with_port(proxy.addr().port())
        .with_credentials(broker.username(), broker.password())
        .with_virtual_host(broker.virtual_host())
}

fn proxy_cut(ctx: &Ctx) -> Result<Line> {
    let mut line = Line::new("proxy-cut");
    let n = 5_000;
    let proxy = FaultProxy::start((ctx.broker.host(), ctx.broker.port()))?;
    let through = via(&proxy, &ctx.broker);
    let flow = Flow::start(&ctx.broker, &through, "cut", |_| {}, |b| b)?;
    run_with_faults(&mut line, &flow, &through, n, 1_000, |progress| {
        repeat_faults(progress, n, 4, |_| {
            let cut = proxy.cut_all();
            log::info!("cut {cut} connection(s)");
            Ok(())
        })
    })?;
    let stats = flow.finish()?;
    line.reconnects(&stats, 4, "the consumer did not reconnect after every cut");
    Ok(line)
}

fn proxy_blackhole(ctx: &Ctx) -> Result<Line> {
    let mut line = Line::new("proxy-blackhole");
    let n = 3_000;
    let heartbeat = Duration::from_secs(2);
    let proxy = FaultProxy::start((ctx.broker.host(), ctx.broker.port()))?;
    let through = via(&proxy, &ctx.broker)
        .with_heartbeat(heartbeat)
        .with_connection_timeout(Duration::from_secs(2));
    let flow = Flow::start(&ctx.broker, &through, "blackhole", |_| {}, |b| b)?;
    let mut detected = None;
    run_with_faults(&mut line, &flow, &through, n, 500, |progress| {
        wait_progress(progress, n * 3 / 10);
        let t = Instant::now();
        proxy.set_blackhole(true);
        // Every connection open when the traffic stopped must notice by itself.
        let noticed = wait_for(heartbeat * 5, || proxy.open_connections_since(Some(t)) == 0);
        detected = noticed.then(|| t.elapsed());
        proxy.set_blackhole(false);
        Ok(vec![t])
    })?;
    match detected {
        Some(d) => {
            line.notes.push(format!(
                "dead peer noticed after {:.1}s (heartbeat {}s)",
                d.as_secs_f64(),
                heartbeat.as_secs()
            ));
            line.check(
                d <= heartbeat * 3,
                format!(
                    "the dead peer was noticed only after {:.1}s",
                    d.as_secs_f64()
                ),
            );
        }
        None => line.check(false, "the clients never noticed the black hole"),
    }
    let stats = flow.finish()?;
    line.reconnects(&stats, 0, "");
    Ok(line)
}

fn memory_alarm(ctx: &Ctx) -> Result<Line> {
    let mut line = Line::new("memory-alarm");
    let blocked_timeout = Duration::from_secs(3);
    let config = ctx
        .broker
        .clone()
        .with_blocked_connection_timeout(blocked_timeout);
    // A slow consumer, so that a backlog is left to drain during the alarm.
    let flow = Flow::start(
        &ctx.broker,
        &config,
        "alarm",
        |registry| {
            let _ = registry.subscribe(
                "#",
                handler_fn("slow", |_, _| {
                    thread::sleep(Duration::from_millis(2));
                    Ok(())
                }),
            );
        },
        |b| b.prefetch(50),
    )?;
    let progress = AtomicUsize::new(0);
    let before = publish(
        &config,
        &flow.exchange,
        events(2_000),
        50_000,
        &progress,
        Duration::from_secs(30),
    )?;

    let open = |name: &str| -> Result<EventPublisher> {
        let connection = Connection::open(&config.clone().with_connection_name(name))?;
        Ok(EventPublisher::new(connection, &flow.exchange)?)
    };
    let mut blocked_publisher = open(PUBLISHER)?;
    let mut closed_publisher = open(PUBLISHER)?;
    let extra = events(2);

    let alarm = Instant::now();
    pubsub_testkit::rabbitmqctl(&["-q", "set_vm_memory_high_watermark", "0"])
        .map_err(|e| anyhow!(e))?;
    let consumed_at_alarm = flow.recorder.unique();

    // A publish fails after the blocked-connection timeout instead of hanging.
    let t = Instant::now();
    let first = blocked_publisher.publish(&extra[0]);
    let failed_after = t.elapsed();
    line.check(
        matches!(&first, Err(e) if matches!(e.error().as_amqp(), Some(pubsub_amqp::Error::Blocked { .. }))),
        format!("a publish during the alarm did not fail as blocked: {first:?}"),
    );
    line.check(
        failed_after < blocked_timeout + Duration::from_secs(3),
        format!(
            "the blocked publish took {:.1}s to fail",
            failed_after.as_secs_f64()
        ),
    );
    // Consumers keep draining while publishers are blocked.
    let drained = wait_for(Duration::from_secs(5), || {
        flow.recorder.unique() > consumed_at_alarm + 50
    });
    line.check(drained, "the consumer stopped draining during the alarm");
    // Closing a blocked publisher is bounded.
    let _ = closed_publisher.publish(&extra[1]);
    let t = Instant::now();
    let _ = closed_publisher.close();
    let close_took = t.elapsed();
    line.check(
        close_took < Duration::from_secs(8),
        format!(
            "closing a blocked publisher took {:.1}s",
            close_took.as_secs_f64()
        ),
    );

    ctx.guard.restore();
    let cleared = Instant::now();
    // The same publisher works again once the alarm clears.
    let again = events(1);
    let recovered = wait_for(Duration::from_secs(20), || {
        blocked_publisher.publish(&again[0]).is_ok()
    });
    line.check(
        recovered,
        "the publisher did not recover after the alarm cleared",
    );
    let mut tally = before;
    if recovered {
        tally.sent += 1;
        let id = again[0].event_id().as_u128();
        tally.confirmed.insert(id);
        tally.confirm_times.push((Instant::now(), id));
    }
    flow.wait_consumed(&tally.confirmed, Duration::from_secs(60));
    line.count(&tally, &flow.recorder);
    line.recovery(&[cleared], &tally, &flow.recorder);
    line.notes.push(format!(
        "alarm {:.1}s; blocked publish failed after {:.1}s; blocked close took {:.1}s",
        (cleared - alarm).as_secs_f64(),
        failed_after.as_secs_f64(),
        close_took.as_secs_f64()
    ));
    let _ = blocked_publisher.close();
    flow.finish()?;
    Ok(line)
}

fn handler_panics(ctx: &Ctx) -> Result<Line> {
    let mut line = Line::new("handler-panics");
    let n = 2_000;
    let flow = Flow::start(
        &ctx.broker,
        &ctx.broker,
        "panics",
        |registry| {
            let _ = registry.subscribe(
                "#",
                handler_fn("fragile", |event, _| {
                    if event.data()["seq"].as_u64().is_some_and(|s| s % 100 == 0) {
                        panic!("fragile handler panics on {}", event.event_id());
                    }
                    Ok(())
                }),
            );
        },
        |b| b,
    )?;
    let progress = AtomicUsize::new(0);
    let tally = publish(
        &ctx.broker,
        &flow.exchange,
        events(n),
        50_000,
        &progress,
        Duration::from_secs(30),
    )?;
    let panicking = n.div_ceil(100);
    flow.wait_consumed(&tally.confirmed, Duration::from_secs(30));
    let settled = wait_for(Duration::from_secs(30), || {
        flow.stats().dead_lettered_exhausted as usize >= panicking
    });
    line.count(&tally, &flow.recorder);
    let dead = flow.dead_letters()?;
    let stats = flow.finish()?;
    line.notes.push(format!(
        "DLQ {dead} (expected {panicking}), handler failures {}",
        stats.handler_failures
    ));
    line.check(
        settled && dead as usize == panicking,
        format!("{dead} dead letters, expected {panicking}"),
    );
    line.check(
        stats.acked as usize == n - panicking,
        format!("{} acked, expected {}", stats.acked, n - panicking),
    );
    Ok(line)
}

fn poison(ctx: &Ctx) -> Result<Line> {
    let mut line = Line::new("poison");
    let flow = Flow::start(
        &ctx.broker,
        &ctx.broker,
        "poison",
        |_| {},
        |b| b.max_body_size(64 * 1024).supported_major_versions(&[1]),
    )?;
    let json_props = Properties {
        content_type: Some(json::CONTENT_TYPE.to_owned()),
        persistent: true,
        ..Properties::default()
    };
    let valid_body = json::to_vec(&events(1)[0]);
    let v9 = Event::builder("order", "created").version("9.0").build()?;
    let poison: Vec<(Vec<u8>, Properties)> = vec![
        (b"{not json".to_vec(), json_props.clone()),
        (vec![0xff, 0xfe, 0xfd], json_props.clone()),
        (Vec::new(), json_props.clone()),
        (br#"{"domain":"order","action":"created","data":{}}"#.to_vec(), json_props.clone()),
        (br#"{"domain":5,"action":"created","data":{},"event_id":"x","timestamp":"t","version":"1"}"#.to_vec(), json_props.clone()),
        (json::to_vec(&v9), json_props.clone()),
        (format!("{{\"data\":{}{}}}", "[".repeat(10_000), "]".repeat(10_000)).into_bytes(), json_props.clone()),
        (valid_body.clone(), Properties { content_type: Some("application/xml".into()), ..json_props.clone() }),
        (vec![b' '; 100 * 1024], json_props.clone()),
    ];
    let mut connection = Connection::open(&ctx.broker)?;
    let channel = connection.open_channel()?;
    let confirms = channel.enable_confirms()?;
    let valid = events(200);
    let mut confirmed = std::collections::HashSet::new();
    let mut sent = 0;
    for (i, event) in valid.iter().enumerate() {
        channel.publish(
            &flow.exchange,
            event.routing_key(),
            &json::to_vec(event),
            &json_props,
            false,
        )?;
        sent += 1;
        if let Some((body, props)) = poison.get(i) {
            channel.publish(&flow.exchange, "order.created", body, props, false)?;
        }
    }
    let expected_tags = (valid.len() + poison.len()) as u64;
    let all_confirmed = wait_for(
        Duration::from_secs(10),
        || matches!(confirms.try_recv(), Ok(Some(c)) if c.delivery_tag == expected_tags),
    );
    line.check(
        all_confirmed,
        "the broker did not confirm the injected messages",
    );
    for event in &valid {
        confirmed.insert(event.event_id().as_u128());
    }
    let tally = crate::harness::Tally {
        sent,
        confirmed,
        ..Default::default()
    };
    flow.wait_consumed(&tally.confirmed, Duration::from_secs(30));
    wait_for(Duration::from_secs(10), || {
        flow.stats().dead_lettered_poison as usize >= poison.len()
    });
    line.count(&tally, &flow.recorder);
    let dead = flow.dead_letters()?;
    let stats = flow.finish()?;
    line.notes.push(format!(
        "{} poison injected, DLQ {dead}, retried {}",
        poison.len(),
        stats.retried
    ));
    line.check(
        dead as usize == poison.len(),
        format!("{dead} dead letters, expected {}", poison.len()),
    );
    line.check(
        stats.retried == 0,
        format!("{} poison messages were retried", stats.retried),
    );
    Ok(line)
}

/// Good events through `EventPublisher`, with hostile messages from a raw AMQP client spread
/// through the stream: every class of `pubsub_testkit::raw::hostile::every_class` in turn.
fn hostile(ctx: &Ctx) -> Result<Line> {
    let mut line = Line::new("hostile");
    let n = 10_000;
    let count = 50;
    let flow = Flow::start(&ctx.broker, &ctx.broker, "hostile", |_| {}, |b| b)?;
    let classes = every_class("order.created");
    // Their bodies are valid events: only the frames are wrong, so none may reach a handler.
    let bodies = events(count);
    let hostile_ids: std::collections::HashSet<u128> =
        bodies.iter().map(|e| e.event_id().as_u128()).collect();
    let (tally, injected) = publish_beside(&ctx.broker, &flow.exchange, n, |progress| {
        let mut raw = RawPublisher::connect(&ctx.broker)?;
        for (i, body) in bodies.iter().enumerate() {
            wait_progress(progress, n * (i + 1) / (count + 1));
            let message = &classes[i % classes.len()];
            raw.publish(
                &flow.exchange,
                &message.routing_key,
                &message.header,
                &json::to_vec(body),
            )
            .with_context(|| format!("publishing hostile message {i} ({})", message.class))?;
        }
        raw.close()?;
        Ok(count)
    })?;
    flow.wait_consumed(&tally.confirmed, Duration::from_secs(60));
    let settled = wait_for(Duration::from_secs(30), || {
        flow.stats().dead_lettered_poison as usize >= count
    });
    line.count(&tally, &flow.recorder);
    let dead = flow.dead_letters()?;
    let hostile_handled = count - flow.recorder.missing(&hostile_ids);
    let stats = flow.finish()?;
    line.notes.push(format!(
        "{injected} hostile of {} classes, DLQ {dead}, hostile handled {hostile_handled}, consumer reconnects {}",
        classes.len(),
        stats.reconnects
    ));
    line.check(
        tally.confirmed.len() == n,
        format!(
            "only {} of {n} events were confirmed",
            tally.confirmed.len()
        ),
    );
    line.check(
        settled && dead as usize == count,
        format!("{dead} dead letters, expected {count}"),
    );
    line.check(
        hostile_handled == 0,
        format!("{hostile_handled} hostile message(s) reached a handler"),
    );
    line.check(
        stats.reconnects == 0,
        format!("the consumer reconnected {} time(s)", stats.reconnects),
    );
    Ok(line)
}

fn slow_handler(ctx: &Ctx) -> Result<Line> {
    let mut line = Line::new("slow-handler");
    let heartbeat = Duration::from_secs(1);
    let config = ctx.broker.clone().with_heartbeat(heartbeat);
    let flow = Flow::start(
        &ctx.broker,
        &config,
        "slow",
        |registry| {
            let _ = registry.subscribe(
                "#",
                handler_fn("slow", move |_, _| {
                    thread::sleep(heartbeat * 3);
                    Ok(())
                }),
            );
        },
        |b| b.prefetch(1),
    )?;
    let progress = AtomicUsize::new(0);
    let tally = publish(
        &config,
        &flow.exchange,
        events(3),
        100,
        &progress,
        Duration::from_secs(30),
    )?;
    flow.wait_consumed(&tally.confirmed, Duration::from_secs(30));
    line.count(&tally, &flow.recorder);
    let connections = pubsub_testkit::connections_named(CONSUMER).map_err(|e| anyhow!(e))?;
    let stats = flow.finish()?;
    line.notes.push(format!(
        "handler took {}s per event, heartbeat {}s, reconnects {}",
        (heartbeat * 3).as_secs(),
        heartbeat.as_secs(),
        stats.reconnects
    ));
    line.check(
        stats.reconnects == 0,
        "the consumer lost its connection during slow handlers",
    );
    line.check(
        connections == 1,
        format!("{connections} consumer connection(s) open, expected 1"),
    );
    line.check(stats.redelivered == 0, "deliveries were redelivered");
    Ok(line)
}

fn ack_timeout(ctx: &Ctx) -> Result<Line> {
    let mut line = Line::new("ack-timeout");
    // The first run of the first event blocks until the broker has given up on its ack.
    let (entered_tx, entered) = crossbeam_channel::bounded::<()>(1);
    let (release, released) = crossbeam_channel::bounded::<()>(1);
    let first = Arc::new(std::sync::atomic::AtomicBool::new(true));
    // A channel reads the ack timeout when it opens: set it before the subscriber starts.
    ctx.guard.set_consumer_timeout(Duration::from_secs(2))?;
    let flow = Flow::start(
        &ctx.broker,
        &ctx.broker,
        "acktimeout",
        |registry| {
            let _ = registry.subscribe(
                "#",
                handler_fn("stuck-once", move |_, _| {
                    if first.swap(false, Ordering::SeqCst) {
                        let _ = entered_tx.send(());
                        let _ = released.recv_timeout(Duration::from_secs(120));
                    }
                    Ok(())
                }),
            );
        },
        |b| b.prefetch(1),
    )?;
    let progress = AtomicUsize::new(0);
    let mut tally = publish(
        &ctx.broker,
        &flow.exchange,
        events(1),
        100,
        &progress,
        Duration::from_secs(30),
    )?;
    entered
        .recv_timeout(Duration::from_secs(30))
        .map_err(|_| anyhow!("the handler never ran"))?;
    // RabbitMQ checks ack timeouts once a minute: the consumer disappears from the queue
    // when its channel is closed.
    let mut connection = Connection::open(&ctx.broker)?;
    let closed = wait_for(Duration::from_secs(90), || {
        connection
            .open_channel()
            .and_then(|c| c.queue_info(&flow.queue))
            .is_ok_and(|info| info.consumer_count == 0)
    });
    let t = Instant::now();
    let _ = release.send(());
    ctx.guard.restore();
    line.check(closed, "the broker never timed the delivery out");
    let after = publish(
        &ctx.broker,
        &flow.exchange,
        events(100),
        1_000,
        &progress,
        Duration::from_secs(30),
    )?;
    tally.sent += after.sent;
    tally.confirmed.extend(after.confirmed);
    tally.confirm_times.extend(after.confirm_times);
    flow.wait_consumed(&tally.confirmed, Duration::from_secs(60));
    line.count(&tally, &flow.recorder);
    line.recovery(&[t], &tally, &flow.recorder);
    let stats = flow.finish()?;
    line.notes.push(format!(
        "consumer reconnects {}, redelivered {}",
        stats.reconnects, stats.redelivered
    ));
    line.check(stats.reconnects >= 1, "the subscriber did not reconnect");
    line.check(
        stats.redelivered >= 1,
        "the timed-out delivery did not come back",
    );
    Ok(line)
}

fn queue_deleted(ctx: &Ctx) -> Result<Line> {
    let mut line = Line::new("queue-deleted");
    let flow = Flow::start(&ctx.broker, &ctx.broker, "deleted", |_| {}, |b| b)?;
    let progress = AtomicUsize::new(0);
    let first = publish(
        &ctx.broker,
        &flow.exchange,
        events(100),
        10_000,
        &progress,
        Duration::from_secs(30),
    )?;
    flow.wait_consumed(&first.confirmed, Duration::from_secs(30));

    let mut connection = Connection::open(&ctx.broker)?;
    let channel = connection.open_channel()?;
    let t = Instant::now();
    channel.delete_queue(&flow.queue)?;
    let redeclared = wait_for(Duration::from_secs(15), || {
        connection
            .open_channel()
            .and_then(|c| c.queue_info(&flow.queue))
            .is_ok_and(|info| info.consumer_count == 1)
    });
    line.check(redeclared, "the subscriber did not declare its queue again");
    let second = publish(
        &ctx.broker,
        &flow.exchange,
        events(100),
        10_000,
        &progress,
        Duration::from_secs(30),
    )
    .context("publishing after the queue came back")?;
    flow.wait_consumed(&second.confirmed, Duration::from_secs(30));
    let mut tally = second;
    tally.sent += first.sent;
    tally.confirmed.extend(first.confirmed);
    line.count(&tally, &flow.recorder);
    line.recovery(&[t], &tally, &flow.recorder);
    let stats = flow.finish()?;
    line.reconnects(&stats, 0, "");
    Ok(line)
}
