# Tasks for this workspace. `just --list` shows them.

set shell := ["bash", "-euo", "pipefail", "-c"]

# Broker the demo, the tests and the tools use (override with AMQP_URL).
export AMQP_URL := env_var_or_default("AMQP_URL", "amqp://guest:guest@localhost:5672/%2f")

# List the tasks.
default:
    @just --list

# Run the demo: order and user events through RabbitMQ into handlers (`just demo --help`).
[no-exit-message] # the demo says itself what went wrong
demo *ARGS:
    #!/usr/bin/env bash
    set -euo pipefail
    # Start a local broker first when none answers, unless the run needs none or AMQP_URL names
    # a broker `just broker` cannot start (the demo then says itself what it could not reach).
    needs_broker=true
    for arg in {{ARGS}}; do
        case "$arg" in --in-process|--asyncapi|--help|-h|--version|-V) needs_broker=false;; esac
    done
    hostport="${AMQP_URL#*://}"; hostport="${hostport##*@}"; hostport="${hostport%%/*}"; hostport="${hostport%%\?*}"
    if $needs_broker && ! just _broker-answers 2>/dev/null; then
        case "${AMQP_URL%%://*}://$hostport" in
            amqp://localhost|amqp://localhost:5672|amqp://127.0.0.1|amqp://127.0.0.1:5672)
                echo "No broker answers at $hostport: starting one (just broker)..."
                just broker || true;;
        esac
    fi
    cargo run --quiet --release -p demo -- {{ARGS}}

# Everything CI checks: formatting, lints, the API docs, unit and integration tests (needs RabbitMQ).
test:
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets -- -D warnings
    RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --quiet
    cargo test --workspace
    # The optional trace context (`otel`): its lints, and the trace test with an in-memory exporter.
    cargo clippy -p pubsub --all-targets --features otel -- -D warnings
    cargo test -p pubsub --features otel --test it otel
    # The store and the task queue through the facade (features `store`, `tasks`): lints, and the
    # doctest of a whole service on the one crate.
    cargo clippy -p pubsub --all-targets --features store,tasks -- -D warnings
    cargo test -p pubsub --features store,tasks --doc

# The fault suite: broker restarts, killed connections, a fault proxy, memory alarm (needs RabbitMQ and rabbitmqctl).
test-faults *ARGS:
    cargo run --quiet --release -p pubsub-faults -- {{ARGS}}

# Fuzz the frame guard's parser for SECONDS (cargo-fuzz, installed if missing; new inputs go to a temporary corpus).
fuzz SECONDS="60":
    #!/usr/bin/env bash
    set -euo pipefail
    command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
    # cargo-fuzz wants nightly's -Z flags: a nightly toolchain if there is one, else the stable
    # one with RUSTC_BOOTSTRAP (no other toolchain can be fetched on every machine).
    toolchain=()
    if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
        toolchain=(+nightly)
    else
        export RUSTC_BOOTSTRAP=1
    fi
    found="$(mktemp -d)"
    trap 'rm -rf "$found"' EXIT
    cd crates/pubsub-amqp/fuzz
    # New inputs go to the first folder (temporary); the committed seeds are only read.
    cargo "${toolchain[@]}" fuzz run inbound "$found" corpus/inbound -- -max_total_time={{SECONDS}} -rss_limit_mb=2048 -print_final_stats=1

# Start a local 3-node RabbitMQ cluster beside the default broker (AMQP ports 5673-5675).
cluster:
    scripts/cluster.sh start

# Stop the local cluster and remove its data.
cluster-stop:
    scripts/cluster.sh stop

# The cluster scenarios: start the 3-node cluster, stop nodes under a running flow, stop the cluster.
test-cluster *ARGS:
    #!/usr/bin/env bash
    set -euo pipefail
    trap 'scripts/cluster.sh stop' EXIT
    scripts/cluster.sh start
    cargo run --quiet --release -p pubsub-faults -- --cluster {{ARGS}}
    # The cluster's end-to-end rate beside one node's (a short run: checks that it runs).
    cargo run --quiet --release -p pubsub-bench -- --cluster --quick

# Throughput and latency benchmark against the broker (`just bench --quick` for a short run).
bench *ARGS:
    cargo run --quiet --release -p pubsub-bench -- {{ARGS}}

# Start a local RabbitMQ: Docker Compose where a Docker engine answers, else the installed rabbitmq-server.
broker:
    #!/usr/bin/env bash
    set -euo pipefail
    if just _broker-answers 2>/dev/null; then echo "RabbitMQ already answers."; exit 0; fi
    hostport="${AMQP_URL#*://}"; hostport="${hostport##*@}"; hostport="${hostport%%/*}"; hostport="${hostport%%\?*}"
    case "${AMQP_URL%%://*}://$hostport" in
        amqp://localhost|amqp://localhost:5672|amqp://127.0.0.1|amqp://127.0.0.1:5672) ;;
        *)
            echo "No broker answers at $hostport, and 'just broker' starts one on localhost:5672 only:" >&2
            echo "start that broker, or unset AMQP_URL to use a local one." >&2
            exit 1;;
    esac
    if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
        docker compose up -d --wait
    elif command -v rabbitmq-server >/dev/null 2>&1; then
        rabbitmq-server -detached
        # Waits for the node to register, then to start (await_startup alone fails at once
        # while a detached node has not registered yet).
        scripts/rabbitmq-wait.sh -t 120
    else
        echo "No broker could be started: install Docker (https://docs.docker.com/get-docker/) and run 'docker compose up -d'," >&2
        echo "or install RabbitMQ (Debian/Ubuntu: 'sudo apt-get install rabbitmq-server'; macOS: 'brew install rabbitmq')." >&2
        exit 1
    fi
    for _ in $(seq 1 60); do just _broker-answers 2>/dev/null && { echo "RabbitMQ is up."; exit 0; }; sleep 1; done
    echo "RabbitMQ was started but does not answer yet; check 'docker compose logs' or 'rabbitmqctl status'." >&2
    exit 1

# Format the code.
fmt:
    cargo fmt --all

# Lint with clippy, warnings as errors.
lint:
    cargo clippy --workspace --all-targets -- -D warnings

# Build the API docs (doctests run in `just test`).
doc:
    cargo doc --workspace --no-deps

# Whether something accepts TCP connections at the host and port of AMQP_URL.
_broker-answers:
    #!/usr/bin/env bash
    hostport="${AMQP_URL#*://}"; hostport="${hostport##*@}"; hostport="${hostport%%/*}"; hostport="${hostport%%\?*}"
    host="${hostport%:*}"; port="${hostport##*:}"; [[ "$hostport" == *:* ]] || port=5672
    (exec 3<>"/dev/tcp/${host:-localhost}/${port}") 2>/dev/null
