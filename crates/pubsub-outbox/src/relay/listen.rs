//! PostgreSQL's wake-up: a thread that `LISTEN`s on the outbox's channel and wakes the relay
//! on each notification (staging notifies, and PostgreSQL delivers only on commit), so that
//! an event committed by any process is published at once, without polling.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use postgres::fallible_iterator::FallibleIterator;

use crate::error::{Error, Result};
use crate::outbox::Outbox;
use crate::schema::CHANNEL;

/// How often the listener looks at its stop flag while no notification comes.
const TICK: Duration = Duration::from_millis(200);
/// How long it waits before connecting again after losing its connection.
const RECONNECT: Duration = Duration::from_secs(1);

/// Starts the listener of `outbox`'s database; it ends when `stop` is set.
pub(crate) fn spawn(outbox: Outbox, stop: Arc<AtomicBool>) -> Result<JoinHandle<()>> {
    // The first connection is made here, so that a database that is down is an error now.
    let first = listen(&outbox)?;
    thread::Builder::new()
        .name("pubsub-outbox-listen".into())
        .spawn(move || run(&outbox, &stop, first))
        .map_err(Error::Spawn)
}

fn listen(outbox: &Outbox) -> Result<postgres::Client> {
    let mut client = outbox.database().connect_postgres()?;
    client
        .batch_execute(&format!("LISTEN {CHANNEL}"))
        .map_err(|e| crate::error::query_error("listening for the outbox's commits", e))?;
    Ok(client)
}

fn run(outbox: &Outbox, stop: &AtomicBool, first: postgres::Client) {
    let mut client = Some(first);
    while !stop.load(Ordering::Acquire) {
        let Some(c) = client.as_mut() else {
            thread::sleep(RECONNECT);
            match listen(outbox) {
                Ok(c) => {
                    log::info!("outbox listener reconnected to {}", outbox.database());
                    client = Some(c);
                    // Whatever committed while it was away.
                    outbox.wake();
                }
                Err(e) => log::debug!("outbox listener: {e}"),
            }
            continue;
        };
        let next = c
            .notifications()
            .timeout_iter(TICK)
            .next()
            .map(|n| n.is_some());
        match next {
            Ok(true) => outbox.wake(),
            Ok(false) => {}
            Err(e) => {
                log::warn!(
                    "outbox listener lost {}: {e}; the relay polls until it is back",
                    outbox.database()
                );
                client = None;
            }
        }
    }
}
