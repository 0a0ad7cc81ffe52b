//! `pubsub tail`.

use std::io::{BufRead, BufReader};
use std::ops::ControlFlow;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use pubsub_amqp::Properties;
use pubsub_cli::tail::{Tail, TailOptions};
use pubsub_registry::Pattern;
use pubsub_testkit::Bus;

use crate::support::{event, test_bus, wait_until, BusExt, WAIT};

#[test]
fn tail_shows_what_the_patterns_match_with_registry_semantics() {
    let Some(bus) = test_bus() else { return };
    let patterns = ["ord*.created", "user.#"].map(|p| Pattern::parse(p).unwrap());
    let options = TailOptions {
        exchange: bus.exchange().to_owned(),
        patterns: patterns.to_vec(),
        envelope: Default::default(),
    };
    let mut tail = Tail::start(bus.connection(), &options).unwrap();
    assert_eq!(tail.bindings(), ["*.created", "user.#"]);
    let queue = tail.queue().to_owned();
    assert!(queue.starts_with("pubsub-tail."), "{queue}");

    let mut publisher = bus.publisher();
    let order = event("order", "created", 1);
    publisher.publish(&order).unwrap();
    // Bound by `*.created`, but the glob word `ord*` does not match `ship`.
    publisher.publish(&event("ship", "created", 2)).unwrap();
    let user = event("user", "registered", 3);
    publisher.publish(&user).unwrap();
    bus.publish_raw(
        bus.exchange(),
        "user.raw",
        b"not json",
        &Properties::default(),
    );

    let mut seen = Vec::new();
    tail.run(&crossbeam_channel::never(), |m| {
        seen.push(m.clone());
        Ok(if seen.len() == 3 {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        })
    })
    .unwrap();
    let keys: Vec<&str> = seen.iter().map(|m| m.routing_key.as_str()).collect();
    assert_eq!(keys, ["order.created", "user.registered", "user.raw"]);
    assert_eq!(seen[0].event.as_ref().unwrap(), &order);
    assert_eq!(seen[1].event.as_ref().unwrap(), &user);
    assert!(seen[2].event.is_err());
    assert!(
        seen[2].line().contains("<not an event: "),
        "{}",
        seen[2].line()
    );

    tail.close().unwrap();
    wait_until("the tail queue is gone", || queue_gone(&bus, &queue));
    publisher.close().unwrap();
}

#[test]
fn tail_stops_on_the_stop_signal() {
    let Some(bus) = test_bus() else { return };
    let options = TailOptions {
        exchange: bus.exchange().to_owned(),
        patterns: vec![Pattern::parse("#").unwrap()],
        envelope: Default::default(),
    };
    let mut tail = Tail::start(bus.connection(), &options).unwrap();
    let (stop_tx, stop_rx) = crossbeam_channel::bounded(1);
    stop_tx.send(()).unwrap();
    tail.run(&stop_rx, |_| panic!("nothing was published"))
        .unwrap();
    tail.close().unwrap();
}

#[test]
fn tail_on_a_missing_exchange_says_so() {
    let Some(mut bus) = test_bus() else { return };
    let missing = bus.exchange_name("missing");
    let output = crate::support::pubsub(&["tail", "--exchange", &missing]);
    crate::support::assert_exit(&output, 1);
    let err = crate::support::stderr(&output);
    assert!(
        err.contains(&format!("exchange `{missing}` does not exist")),
        "{err}"
    );
}

#[cfg(unix)] // sends SIGINT with kill(1)
#[test]
fn the_binary_prints_json_lines_and_ctrl_c_stops_it_cleanly() {
    let Some(bus) = test_bus() else { return };
    let mut tail = spawn_tail(&["--json", "order.*", "--exchange", bus.exchange()]);
    let queue = wait_ready(&tail.stderr);

    let order = event("order", "paid", 7);
    let mut publisher = bus.publisher();
    publisher.publish(&event("user", "registered", 1)).unwrap(); // not matched
    publisher.publish(&order).unwrap();
    let line = tail
        .stdout
        .recv_timeout(WAIT)
        .expect("a line from pubsub tail");
    let value: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(value["routing_key"], "order.paid");
    assert_eq!(value["event"]["event_id"], order.event_id().to_string());
    assert_eq!(value["event"]["data"]["n"], 7);
    assert_eq!(value["app_id"], "cli-test");

    // Ctrl-C.
    let status = Command::new("kill")
        .args(["-INT", &tail.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let code = wait_exit(&mut tail.child);
    assert_eq!(code, Some(0));
    wait_until("the tail queue is gone", || queue_gone(&bus, &queue));
    publisher.close().unwrap();
}

#[test]
fn the_binary_prints_readable_lines_and_stops_after_count() {
    let Some(bus) = test_bus() else { return };
    let mut tail = spawn_tail(&["-n", "2", "--exchange", bus.exchange()]);
    let queue = wait_ready(&tail.stderr);
    let mut publisher = bus.publisher();
    let first = event("order", "created", 1);
    publisher.publish(&first).unwrap();
    publisher.publish(&event("order", "shipped", 2)).unwrap();
    publisher.publish(&event("order", "cancelled", 3)).unwrap();
    let line = tail.stdout.recv_timeout(WAIT).unwrap();
    assert!(
        line.contains(&format!(
            "  order.created  {}  {{\"n\":1}}",
            first.event_id()
        )),
        "{line}"
    );
    let line = tail.stdout.recv_timeout(WAIT).unwrap();
    assert!(line.contains("  order.shipped  "), "{line}");
    assert_eq!(wait_exit(&mut tail.child), Some(0));
    assert!(tail.stdout.recv_timeout(WAIT).is_err(), "a third line");
    wait_until("the tail queue is gone", || queue_gone(&bus, &queue));
    publisher.close().unwrap();
}

struct Running {
    child: Child,
    stdout: Receiver<String>,
    stderr: Receiver<String>,
}

fn spawn_tail(args: &[&str]) -> Running {
    let mut child = Command::new(env!("CARGO_BIN_EXE_pubsub"))
        .arg("tail")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = lines(child.stdout.take().unwrap());
    let stderr = lines(child.stderr.take().unwrap());
    Running {
        child,
        stdout,
        stderr,
    }
}

pub(crate) fn lines(pipe: impl std::io::Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = crossbeam_channel::unbounded();
    // Ends with the pipe, when the process exits.
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Waits for the line saying the tail is bound, and returns its queue.
pub(crate) fn wait_ready(stderr: &Receiver<String>) -> String {
    let line = stderr.recv_timeout(WAIT).expect("pubsub tail is ready");
    assert!(line.starts_with("tailing exchange `"), "{line}");
    line.split("(queue `")
        .nth(1)
        .and_then(|rest| rest.split('`').next())
        .unwrap()
        .to_owned()
}

pub(crate) fn wait_exit(child: &mut Child) -> Option<i32> {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("pubsub tail did not exit");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn queue_gone(bus: &Bus, queue: &str) -> bool {
    let mut connection = bus.connection();
    let channel = connection.open_channel().unwrap();
    let gone = matches!(
        channel.queue_info(queue),
        Err(pubsub_amqp::Error::NotFound { .. })
    );
    let _ = connection.close();
    gone
}
