//! Faults of the connections and of the broker itself: connections closed, the broker
//! restarted, a proxy that cuts or black-holes, a memory alarm.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};
use pubsub_amqp::{AmqpConfig, Connection};
use pubsub_core::handler_fn;
use pubsub_publisher::EventPublisher;
use pubsub_testkit::FaultProxy;

use super::{run_with_faults, Ctx};
use crate::harness::{events, publish, wait_for, wait_progress, Flow, Line, CONSUMER, PUBLISHER};

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

pub(super) fn close_connections(ctx: &Ctx) -> Result<Line> {
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

pub(super) fn broker_restart(ctx: &Ctx) -> Result<Line> {
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

pub(super) fn proxy_cut(ctx: &Ctx) -> Result<Line> {
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

pub(super) fn proxy_blackhole(ctx: &Ctx) -> Result<Line> {
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

pub(super) fn memory_alarm(ctx: &Ctx) -> Result<Line> {
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
