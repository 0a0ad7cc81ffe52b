//! Faults in what is delivered and how it is handled: panicking and slow handlers, poison
//! and hostile messages, an ack past the broker's timeout, the queue deleted under the
//! consumer.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use pubsub_amqp::{Connection, Properties};
use pubsub_core::{handler_fn, json, Event};
use pubsub_testkit::raw::{hostile::every_class, RawPublisher};

use super::Ctx;
use crate::harness::{
    events, publish, publish_beside, wait_for, wait_progress, Flow, Line, CONSUMER,
};

pub(super) fn handler_panics(ctx: &Ctx) -> Result<Line> {
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

pub(super) fn poison(ctx: &Ctx) -> Result<Line> {
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
pub(super) fn hostile(ctx: &Ctx) -> Result<Line> {
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

pub(super) fn slow_handler(ctx: &Ctx) -> Result<Line> {
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

pub(super) fn ack_timeout(ctx: &Ctx) -> Result<Line> {
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

pub(super) fn queue_deleted(ctx: &Ctx) -> Result<Line> {
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
