#!/usr/bin/env bash
# Instructions per created order, counted by valgrind (callgrind): a figure
# that, unlike req/s, hardly moves with the machine's speed of the hour.
#
#   scripts/bench-instructions.sh [ECOM_BINARY] [extra `ecom bench create-order` flags, e.g. --tracked]
#
# Runs `ecom bench create-order --rate 100` under callgrind for 2 s and for
# 6 s and divides the difference in instructions by the difference in
# orders stored, so that start-up (migrations, the pre-authorised tokens)
# drops out. Needs valgrind; takes about a minute.
set -euo pipefail

bin=${1:-target/release/ecom}
shift || true
bin=$(realpath "$bin")
command -v valgrind >/dev/null || { echo "valgrind is not installed" >&2; exit 1; }

run() {
    local seconds=$1 dir
    shift
    dir=$(mktemp -d)
    (
        cd "$dir"
        valgrind --tool=callgrind --callgrind-out-file=callgrind.out \
            "$bin" bench create-order --rate 100 --duration "$seconds" "$@" >out.txt 2>err.txt
        instructions=$(grep -o 'Collected : [0-9]*' err.txt | grep -o '[0-9]*$')
        orders=$(grep -o 'orders stored (warm-up included): [0-9]*' out.txt | grep -o '[0-9]*$')
        echo "$instructions $orders"
    )
    rm -rf "$dir"
}

read -r short_instructions short_orders < <(run 2 "$@")
read -r long_instructions long_orders < <(run 6 "$@")
orders=$((long_orders - short_orders))
[ "$orders" -gt 0 ] || { echo "no orders between the two runs" >&2; exit 1; }
echo "$(basename "$bin") $*: $(((long_instructions - short_instructions) / orders / 1000))k instructions per order ($orders orders apart)"
