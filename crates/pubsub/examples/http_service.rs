//! An HTTP service on the async bus (feature `tokio`): each `POST /orders/{id}` publishes
//! `order.placed` and answers `202 Accepted` once the broker has confirmed it, without
//! blocking the runtime; an async handler of the same service looks the order up in
//! PostgreSQL through an async client (tokio-postgres) and counts it.
//!
//! ```sh,norun
//! cargo run -p pubsub --features tokio --example http_service      # on 127.0.0.1:3000, Ctrl-C stops
//! curl -X POST http://127.0.0.1:3000/orders/ORD-1                   # from another terminal
//! cargo run -p pubsub --features tokio --example http_service -- --self-test 20
//! ```
//!
//! `--self-test N` is what `just test` runs: it serves on a free port, sends N requests,
//! waits until each order was looked up, and deletes its queues. The broker comes from
//! `AMQP_URL` (or `RABBITMQ_URL`), PostgreSQL from `DATABASE_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::post;
use axum::Router;
use pubsub::{Event, EventBus, Publisher};
use serde_json::json;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    env_logger::init();
    let self_test = self_test_requests()?;
    let url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .context("connecting to PostgreSQL (DATABASE_URL)")?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            log::error!("the PostgreSQL connection ended: {e}");
        }
    });
    let client = Arc::new(client);

    // A queue of its own for a self-test, deleted at the end.
    let service = match self_test {
        Some(_) => format!("http-example-{}", std::process::id()),
        None => "http-example".to_owned(),
    };
    let mut bus = EventBus::builder(&service).concurrency(64).build_async()?;
    let looked_up = Arc::new(AtomicUsize::new(0));
    let counter = looked_up.clone();
    bus.subscribe_fn("order.placed", "look-up", move |event, _meta| {
        let (client, counter) = (client.clone(), counter.clone());
        async move {
            let id = event.data()["order_id"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            // The handler awaits the database; its delivery waits, no thread does.
            let row = client
                .query_one("SELECT $1::text || ' is looked up'", &[&id])
                .await?;
            let text: String = row.try_get(0)?;
            log::info!("{text}");
            counter.fetch_add(1, Ordering::Relaxed);
            Ok(())
        }
    })?;
    bus.start().await?;

    let app = Router::new()
        .route("/orders/{id}", post(place))
        .with_state(bus.publisher());
    let address = if self_test.is_some() {
        "127.0.0.1:0"
    } else {
        "127.0.0.1:3000"
    };
    let listener = tokio::net::TcpListener::bind(address).await?;
    let address = listener.local_addr()?;
    let served = match self_test {
        None => {
            println!("serving on http://{address}: curl -X POST http://{address}/orders/ORD-1");
            axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = tokio::signal::ctrl_c().await;
                })
                .await
                .context("serving HTTP")
        }
        Some(n) => {
            let server = tokio::spawn(async move { axum::serve(listener, app).await });
            let tested = self_test_run(address, n, &looked_up).await;
            server.abort();
            tested
        }
    };
    let teardown = bus.teardown().await;
    served?;
    teardown?;
    Ok(())
}

/// `POST /orders/{id}`: publishes `order.placed` and answers once the broker confirmed it.
async fn place(
    State(publisher): State<Publisher>,
    Path(id): Path<String>,
) -> Result<StatusCode, (StatusCode, String)> {
    let event = Event::new("order", "placed", json!({ "order_id": id }))
        .map_err(|e| (StatusCode::BAD_REQUEST, e.to_string()))?;
    let unavailable = |e: pubsub::PublishError| (StatusCode::SERVICE_UNAVAILABLE, e.to_string());
    publisher
        .send(event)
        .map_err(unavailable)?
        .await
        .map_err(unavailable)?;
    Ok(StatusCode::ACCEPTED)
}

/// `--self-test N`, if given.
fn self_test_requests() -> anyhow::Result<Option<usize>> {
    let mut args = std::env::args().skip(1);
    match (args.next().as_deref(), args.next()) {
        (None, _) => Ok(None),
        (Some("--self-test"), Some(n)) => {
            Ok(Some(n.parse().with_context(|| {
                format!("--self-test wants a number, not {n:?}")
            })?))
        }
        (Some(other), _) => bail!("unknown argument {other:?} (only --self-test N)"),
    }
}

/// Sends `n` requests to the service at `address` and waits until each order was looked up.
async fn self_test_run(
    address: SocketAddr,
    n: usize,
    looked_up: &AtomicUsize,
) -> anyhow::Result<()> {
    for i in 0..n {
        let status = post_order(address, &format!("ORD-{i}")).await?;
        if status != "202" {
            bail!("POST /orders/ORD-{i} answered {status}, not 202");
        }
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while looked_up.load(Ordering::Relaxed) < n {
        if tokio::time::Instant::now() > deadline {
            bail!(
                "only {} of {n} orders were looked up",
                looked_up.load(Ordering::Relaxed)
            );
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    println!("self-test: {n} requests accepted, {n} orders looked up in PostgreSQL");
    Ok(())
}

/// One `POST /orders/{id}` over a plain connection; the response's status code.
async fn post_order(address: SocketAddr, id: &str) -> anyhow::Result<String> {
    let mut stream = tokio::net::TcpStream::connect(address).await?;
    let request = format!(
        "POST /orders/{id} HTTP/1.1\r\nHost: {address}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    Ok(response
        .split_whitespace()
        .nth(1)
        .unwrap_or_default()
        .to_owned())
}
