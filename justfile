# Tasks for this workspace. `just --list` shows them.

set shell := ["bash", "-euo", "pipefail", "-c"]

# Broker the demo and the tests use (override with AMQP_URL).
amqp_url := env_var_or_default("AMQP_URL", "amqp://guest:guest@localhost:5672/%2f")

# List the tasks.
default:
    @just --list

# Everything CI checks: formatting, lints, unit and integration tests (needs RabbitMQ).
test:
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets -- -D warnings
    cargo test --workspace

# Format the code.
fmt:
    cargo fmt --all

# Lint with clippy, warnings as errors.
lint:
    cargo clippy --workspace --all-targets -- -D warnings

# Build the API docs (doctests run in `just test`).
doc:
    cargo doc --workspace --no-deps
