//! Integration tests against the real broker (127.0.0.1:5672 unless `AMQP_URL` says otherwise).

mod connect;
mod topology;
