#!/usr/bin/env bash
# Runs the shell walkthroughs of the README and the guides as a newcomer would: every block
# fenced ```sh (not ```sh,norun) of each file, in order, as one bash script per file, from
# the repository's root, with the `pubsub` command built from this checkout on PATH. A block
# that fails fails the run, naming the file and showing its output.
#
#   scripts/walkthroughs.sh [FILE...]     (default: README.md and docs/*.md)
#
# Needs what the walkthroughs need: RabbitMQ (and `just`, `cargo`).
set -euo pipefail
cd "$(dirname "$0")/.."

files=("$@")
if [ ${#files[@]} -eq 0 ]; then
    files=(README.md)
    for f in docs/*.md; do [ -e "$f" ] && files+=("$f"); done
fi

# They need the broker: without one they are skipped, as the broker tests skip themselves,
# except under CI=true, where a missing broker fails the run.
if ! just _broker-answers 2>/dev/null; then
    if [ "${CI:-}" = true ]; then
        echo "walkthroughs: no RabbitMQ answers (AMQP_URL, RABBITMQ_URL or localhost:5672), and CI=true" >&2
        exit 1
    fi
    echo "walkthroughs: skipped, no RabbitMQ answers (start one with 'just broker')" >&2
    exit 0
fi

# The CLI the walkthroughs call, built from this checkout.
cargo build --quiet -p pubsub-cli
target="${CARGO_TARGET_DIR:-target}"
case "$target" in /*) ;; *) target="$PWD/$target";; esac
export PATH="$target/debug:$PATH"

# The runnable blocks of a file, in order: the lines between ```sh and ```.
blocks() {
    awk '
        /^```sh[[:space:]]*$/ { inside = 1; n++; printf "\n# --- block %d (line %d)\n", n, NR; next }
        /^```/ && inside { inside = 0; next }
        inside { print }
    ' "$1"
}

failed=0
ran=0
for file in "${files[@]}"; do
    script="$(blocks "$file")"
    if [ -z "$script" ]; then
        continue
    fi
    count="$(grep -c '^# --- block' <<<"$script")"
    log="$(mktemp)"
    printf '==> %s: %s block(s)\n' "$file" "$count"
    if PS4="+ $file: " bash -euxo pipefail -c "$script" >"$log" 2>&1; then
        ran=$((ran + count))
    else
        echo "FAILED: the walkthrough of $file; its output:" >&2
        sed 's/^/    /' "$log" >&2
        failed=1
    fi
    rm -f "$log"
done
if [ "$failed" -ne 0 ]; then
    exit 1
fi
echo "walkthroughs: $ran block(s) ran as written"
