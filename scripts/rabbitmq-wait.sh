#!/usr/bin/env bash
# Waits for a RabbitMQ node that was just started (`rabbitmq-server -detached`) to be up:
#   scripts/rabbitmq-wait.sh [-n NODE] [-t SECONDS] [-p PIDFILE] [-l LOG]
#
# `rabbitmqctl await_startup` waits for a boot that has begun, but fails at once ("not running
# at all") while the node has not registered its name with epmd yet, which a detached start
# does a few seconds later on a busy machine. So this waits in two steps, within one time
# limit: first until the node answers `rabbitmq-diagnostics ping` (it has registered and the
# CLI can reach it), retried once a second; then `await_startup` for the rest of the limit.
# When the node's OS process is gone (its PID file names a process that no longer runs), it
# stops waiting at once. On failure it names the node and points to its log.
#
# NODE: the node name (default: the CLI's default node). SECONDS: the limit (default 120).
# PIDFILE: the node's PID file (RABBITMQ_PID_FILE), if known. LOG: where its log is, for
# the error message (default /var/log/rabbitmq/, Debian's).
set -euo pipefail

node=""
limit=120
pidfile=""
log_hint="/var/log/rabbitmq/"
while getopts "n:t:p:l:" opt; do
    case "$opt" in
        n) node="$OPTARG" ;;
        t) limit="$OPTARG" ;;
        p) pidfile="$OPTARG" ;;
        l) log_hint="$OPTARG" ;;
        *) echo "usage: $0 [-n NODE] [-t SECONDS] [-p PIDFILE] [-l LOG]" >&2; exit 2 ;;
    esac
done
target=()
[ -n "$node" ] && target=(-n "$node")
shown="${node:-the default RabbitMQ node}"

fail() {
    echo "RabbitMQ node $shown $1; see its log: $log_hint" >&2
    exit 1
}

# The node's OS process is known to be gone.
died() {
    [ -n "$pidfile" ] && [ -s "$pidfile" ] || return 1
    local pid
    pid="$(tr -dc '0-9' < "$pidfile")"
    [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null
}

deadline=$((SECONDS + limit))
until rabbitmq-diagnostics -q "${target[@]}" ping >/dev/null 2>&1; do
    died && fail "stopped while starting (its process is gone)"
    [ "$SECONDS" -ge "$deadline" ] && fail "did not register within ${limit} s"
    sleep 1
done
remaining=$((deadline - SECONDS))
[ "$remaining" -lt 5 ] && remaining=5
if ! rabbitmqctl -q "${target[@]}" await_startup --timeout "$remaining" >/dev/null; then
    fail "registered but did not finish starting within ${limit} s"
fi
