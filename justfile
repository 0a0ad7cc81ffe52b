# Tasks for this workspace. `just --list` shows them.

set shell := ["bash", "-euo", "pipefail", "-c"]

# The broker: AMQP_URL, else RABBITMQ_URL (the seeds' name), else RabbitMQ on localhost. No
# default is exported: the demo, the tests and the tools read these variables themselves, so
# neither masks the other. The recipes that start a local broker read the same URL, in bash:
#     url="${AMQP_URL:-${RABBITMQ_URL:-amqp://guest:guest@localhost:5672/%2f}}"

# List the tasks.
default:
    @just --list

# Run the demo: order and user events through RabbitMQ into handlers (`just demo --help`).
[no-exit-message] # the demo says itself what went wrong
demo *ARGS:
    #!/usr/bin/env bash
    set -euo pipefail
    # Start a local broker first when none answers, unless the run needs none or the URL
    # (AMQP_URL, else RABBITMQ_URL) names a broker `just broker` cannot start (the demo then
    # says itself what it could not reach).
    needs_broker=true
    for arg in {{ARGS}}; do
        case "$arg" in --in-process|--asyncapi|--help|-h|--version|-V) needs_broker=false;; esac
    done
    url="${AMQP_URL:-${RABBITMQ_URL:-amqp://guest:guest@localhost:5672/%2f}}"
    hostport="${url#*://}"; hostport="${hostport##*@}"; hostport="${hostport%%/*}"; hostport="${hostport%%\?*}"
    if $needs_broker && ! just _broker-answers 2>/dev/null; then
        case "${url%%://*}://$hostport" in
            amqp://localhost|amqp://localhost:5672|amqp://127.0.0.1|amqp://127.0.0.1:5672)
                echo "No broker answers at $hostport: starting one (just broker)..."
                just broker || true;;
        esac
    fi
    cargo run --quiet --release -p demo -- {{ARGS}}

# Everything CI checks: formatting, lints, the API docs, unit and integration tests (needs RabbitMQ and PostgreSQL; see `_test-prepare`).
test: _test-prepare
    #!/usr/bin/env bash
    set -euxo pipefail
    # The interop tests run `python3`: the one with pika that `_test-prepare` made, if it did.
    venv="${CARGO_TARGET_DIR:-target}/pika-venv"
    case "$venv" in /*) ;; *) venv="$PWD/$venv";; esac
    if [ -x "$venv/bin/python3" ]; then export PATH="$venv/bin:$PATH"; fi
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets -- -D warnings
    RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --quiet
    cargo test --workspace
    # The outbox's async staging (`tokio`: a tokio_postgres transaction) and its lints.
    cargo clippy -p pubsub-outbox --all-targets --features tokio -- -D warnings
    cargo test -p pubsub-outbox --features tokio --test it async
    # The optional trace context (`otel`): its lints, and the trace test with an in-memory exporter.
    cargo clippy -p pubsub --all-targets --features otel,tokio -- -D warnings
    cargo test -p pubsub --features otel,tokio --test it otel
    # The store and the task queue through the facade (features `store`, `tasks`) and the async
    # bus (`tokio`), in one build: lints, the doctests (the README's and the guides' too), the
    # bus running the store and tasks beside its handlers, and the async bus.
    cargo clippy -p pubsub --all-targets --features store,tasks,tokio,outbox -- -D warnings
    RUSTDOCFLAGS="-D warnings" cargo doc -p pubsub --no-deps --quiet --features store,tasks,tokio,outbox
    cargo test -p pubsub --features store,tasks,tokio,outbox --doc
    cargo test -p pubsub --features store,tasks,tokio,outbox --test it -- service asynchronous exactly_once
    # The async bus's HTTP example, run: requests in, events confirmed, handlers awaiting
    # PostgreSQL (needs the broker and PostgreSQL; skipped without them unless CI=true).
    if [ "${CI:-}" = true ] || { just _broker-answers 2>/dev/null && (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null; }; then \
        cargo run -p pubsub --features store,tasks,tokio,outbox --example http_service -- --self-test 20; \
    else echo "http_service self-test: skipped (no broker or no PostgreSQL on 127.0.0.1:5432)"; fi
    # Every shell walkthrough of the README and docs/, run as written (needs the broker).
    scripts/walkthroughs.sh

# Run the shell walkthroughs of the README and docs/ as written, in order, each file as one script (`just walkthroughs docs/cli.md`).
walkthroughs *FILES:
    scripts/walkthroughs.sh {{FILES}}

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

# The incident walkthrough's `orders` service (docs/cli.md): `break` (dead-letters 4 events), `fixed` (handles a replay), `clean` (deletes its queues).
incident STEP *ARGS:
    cargo run --quiet -p demo --example incident -- {{STEP}} {{ARGS}}

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
    url="${AMQP_URL:-${RABBITMQ_URL:-amqp://guest:guest@localhost:5672/%2f}}"
    hostport="${url#*://}"; hostport="${hostport##*@}"; hostport="${hostport%%/*}"; hostport="${hostport%%\?*}"
    case "${url%%://*}://$hostport" in
        amqp://localhost|amqp://localhost:5672|amqp://127.0.0.1|amqp://127.0.0.1:5672) ;;
        *)
            echo "No broker answers at $hostport, and 'just broker' starts one on localhost:5672 only:" >&2
            echo "start that broker, or unset AMQP_URL and RABBITMQ_URL to use a local one." >&2
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

# Whether something accepts TCP connections at the host and port of AMQP_URL, else
# RABBITMQ_URL, else localhost:5672.
_broker-answers:
    #!/usr/bin/env bash
    url="${AMQP_URL:-${RABBITMQ_URL:-amqp://guest:guest@localhost:5672/%2f}}"
    hostport="${url#*://}"; hostport="${hostport##*@}"; hostport="${hostport%%/*}"; hostport="${hostport%%\?*}"
    host="${hostport%:*}"; port="${hostport##*:}"; [[ "$hostport" == *:* ]] || port=5672
    (exec 3<>"/dev/tcp/${host:-localhost}/${port}") 2>/dev/null

# What `just test` needs besides a broker, prepared where it is cheap: pika for the interop
# tests (in a virtualenv under target/ when the python3 on PATH lacks it), and the `test`
# database of the local PostgreSQL (created when psql can reach the server and it is missing).
_test-prepare:
    #!/usr/bin/env bash
    set -uo pipefail
    if ! python3 -c 'import pika' 2>/dev/null; then
        venv="${CARGO_TARGET_DIR:-target}/pika-venv"
        if ! "$venv/bin/python3" -c 'import pika' 2>/dev/null; then
            echo "python3 has no pika: installing it in $venv for the interop tests"
            python3 -m venv "$venv" && "$venv/bin/python3" -m pip install --quiet pika \
                || echo "could not install pika in $venv: install it with 'pip install pika' or 'sudo apt-get install python3-pika' (see the README's prerequisites)" >&2
        fi
    fi
    if command -v psql >/dev/null 2>&1 && [ -z "${PUBSUB_TEST_DATABASE_URL:-}" ]; then
        if psql -h 127.0.0.1 -U postgres -d postgres -tAc 'SELECT 1' >/dev/null 2>&1; then
            if ! psql -h 127.0.0.1 -U postgres -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = 'test'" | grep -q 1; then
                echo "creating the PostgreSQL database 'test' for the store tests"
                psql -h 127.0.0.1 -U postgres -d postgres -qc 'CREATE DATABASE test' || true
            fi
        else
            echo "PostgreSQL does not answer on 127.0.0.1:5432 as postgres: the store tests need it (see the README's prerequisites)" >&2
        fi
    fi
    exit 0
