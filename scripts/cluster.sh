#!/usr/bin/env bash
# A local 3-node RabbitMQ cluster beside the default broker, from the same rabbitmq-server package:
#   scripts/cluster.sh start    start pubsub1..3@localhost on AMQP ports 5673-5675 and cluster them
#   scripts/cluster.sh stop     stop the three nodes and remove their data
#   scripts/cluster.sh status   the cluster's status, as node 1 sees it
# Nodes 1 and 2 also listen for TLS (5676, and 5677 which requires a client certificate),
# with a CA and certificates made by openssl at start, in $PUBSUB_CLUSTER_DIR/tls (ca.pem,
# client.pem and client.key for clients).
# Each node has its own node name, AMQP and Erlang distribution ports, data, log, config,
# feature-flags and plugins files, in directories owned by the `rabbitmq` user (Debian's
# wrapper runs the server as that user). The broker on 5672 is left alone.
set -euo pipefail

BASE="${PUBSUB_CLUSTER_DIR:-/tmp/pubsub-cluster}"
NODES=(1 2 3)
AMQP_PORT_BASE=5672      # node i listens on 5672 + i
DIST_PORT_BASE=25672     # and distributes on 25672 + i
TIMEOUT="${PUBSUB_CLUSTER_TIMEOUT:-120}"

node_name() { echo "pubsub$1@localhost"; }

# Runs a command with node $1's environment.
with_node() {
    local i="$1"; shift
    local dir="$BASE/n$i"
    env \
        RABBITMQ_NODENAME="$(node_name "$i")" \
        RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 \
        RABBITMQ_NODE_PORT="$((AMQP_PORT_BASE + i))" \
        RABBITMQ_DIST_PORT="$((DIST_PORT_BASE + i))" \
        RABBITMQ_MNESIA_BASE="$dir/mnesia" \
        RABBITMQ_LOG_BASE="$dir/log" \
        RABBITMQ_PID_FILE="$dir/pid" \
        RABBITMQ_FEATURE_FLAGS_FILE="$dir/feature_flags" \
        RABBITMQ_CONFIG_FILE="$dir/rabbitmq" \
        RABBITMQ_ENABLED_PLUGINS_FILE="$dir/enabled_plugins" \
        RABBITMQ_CONF_ENV_FILE="$dir/rabbitmq-env.conf" \
        "$@"
}

ctl() { local i="$1"; shift; rabbitmqctl -q -n "$(node_name "$i")" "$@"; }

# Waits until node $1 has registered and started (see rabbitmq-wait.sh), within $TIMEOUT;
# a node that fails to start is named, with its log.
wait_node() {
    local dir="$BASE/n$1"
    "$(dirname "$0")/rabbitmq-wait.sh" -n "$(node_name "$1")" -t "$TIMEOUT" \
        -p "$dir/pid" -l "$dir/log/$(node_name "$1").log"
}

TLS_PORT_BASE=5675       # nodes 1 and 2 listen for TLS on 5675 + i

# A CA, a server certificate for localhost and 127.0.0.1, and a client certificate.
make_certificates() {
    local tls="$BASE/tls"
    [ -f "$tls/client.key" ] && return
    command -v openssl >/dev/null || { echo "openssl is needed for the TLS listeners" >&2; exit 1; }
    mkdir -p "$tls"
    local key=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)
    (
        cd "$tls"
        openssl req -x509 "${key[@]}" -keyout ca.key -out ca.pem -days 2 -subj /CN=pubsub-cluster-ca 2>/dev/null
        printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' > server.ext
        openssl req "${key[@]}" -keyout server.key -out server.csr -subj /CN=localhost 2>/dev/null
        openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 2 -extfile server.ext 2>/dev/null
        openssl req "${key[@]}" -keyout client.key -out client.csr -subj /CN=pubsub-client 2>/dev/null
        openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out client.pem -days 2 2>/dev/null
        chmod 644 ./*.pem ./*.key
    )
}

prepare() {
    local i="$1" dir="$BASE/n$1"
    mkdir -p "$dir/mnesia" "$dir/log"
    cat > "$dir/rabbitmq.conf" <<CONF
listeners.tcp.1 = 127.0.0.1:$((AMQP_PORT_BASE + i))
loopback_users.guest = true
vm_memory_high_watermark.relative = 0.2
CONF
    if [ "$i" -le 2 ]; then
        local require_client=false
        [ "$i" -eq 2 ] && require_client=true
        cat >> "$dir/rabbitmq.conf" <<CONF
listeners.ssl.1 = 127.0.0.1:$((TLS_PORT_BASE + i))
ssl_options.cacertfile = $BASE/tls/ca.pem
ssl_options.certfile = $BASE/tls/server.pem
ssl_options.keyfile = $BASE/tls/server.key
ssl_options.verify = verify_peer
ssl_options.fail_if_no_peer_cert = $require_client
CONF
    fi
    echo '[].' > "$dir/enabled_plugins"
    # Keeps the default node's rabbitmq-env.conf (its NODENAME) from applying.
    echo 'ERL_EPMD_ADDRESS=127.0.0.1' > "$dir/rabbitmq-env.conf"
    chown -R rabbitmq:rabbitmq "$BASE"
}

running() { ctl "$1" eval 'rabbit:is_running().' 2>/dev/null | grep -q true; }

start() {
    command -v rabbitmq-server >/dev/null || { echo "rabbitmq-server is not installed" >&2; exit 1; }
    mkdir -p "$BASE"
    make_certificates
    for i in "${NODES[@]}"; do
        if running "$i"; then echo "$(node_name "$i") already runs"; continue; fi
        prepare "$i"
        echo "starting $(node_name "$i") on 127.0.0.1:$((AMQP_PORT_BASE + i))"
        with_node "$i" rabbitmq-server -detached
    done
    for i in "${NODES[@]}"; do
        wait_node "$i"
    done
    for i in "${NODES[@]:1}"; do
        if ctl 1 cluster_status --formatter json 2>/dev/null | grep -q "\"$(node_name "$i")\""; then
            continue
        fi
        echo "joining $(node_name "$i") to $(node_name 1)"
        ctl "$i" stop_app
        ctl "$i" join_cluster "$(node_name 1)"
        ctl "$i" start_app
    done
    for i in "${NODES[@]}"; do
        wait_node "$i"
    done
    echo "cluster up: amqp://guest:guest@127.0.0.1:5673,127.0.0.1:5674,127.0.0.1:5675/%2f"
    echo "TLS: amqps://localhost:5676 and :5677 (client certificate required), CA and client certificate in $BASE/tls"
}

stop() {
    for i in "${NODES[@]}"; do
        if ctl "$i" status >/dev/null 2>&1; then
            echo "stopping $(node_name "$i")"
            ctl "$i" stop || true
        fi
    done
    rm -rf "$BASE"
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    status) ctl 1 cluster_status ;;
    *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
