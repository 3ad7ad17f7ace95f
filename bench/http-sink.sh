#!/usr/bin/env bash
# The HTTP sink benchmark: `switchyard run flows offers-to-storefront` against one sandbox,
# whole-process, two builds measured in turn in every round.
#
#   N=20000 RUNS=3 BEFORE_BIN=/path/to/old/switchyard bench/http-sink.sh
#
# Environment: N (offers seeded in the sandbox, default 20000), RUNS (rounds, default 3),
# SEED (the sandbox's seed, default 42), PORT (the sandbox's loopback port, default 0: a free
# one), CARGO_TARGET_DIR (where switchyard is built), SWITCHYARD_BIN (measure this switchyard
# binary instead of building one; it also serves the sandbox), BEFORE_BIN (also measure this
# older switchyard binary, in turn with SWITCHYARD_BIN in every round), RUN_TIMEOUT (seconds
# one run may take, default 600), START_TIMEOUT (seconds the sandbox may take to answer,
# default 60).
# See bench/README.md for what it measures and how to read the table.
set -euo pipefail

N=${N:-20000}
RUNS=${RUNS:-3}
SEED=${SEED:-42}
PORT=${PORT:-0}
RUN_TIMEOUT=${RUN_TIMEOUT:-600}
START_TIMEOUT=${START_TIMEOUT:-60}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT="$ROOT/bench-out/http-sink"
WS="$OUT/workspace"
FLOW=offers-to-storefront
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
SWITCHYARD=${SWITCHYARD_BIN:-$TARGET/release/switchyard}
BEFORE=${BEFORE_BIN:-}

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

[[ -x /usr/bin/time ]] || die "/usr/bin/time (GNU time) is needed for CPU time and peak RSS"
for tool in curl python3 timeout; do
    command -v "$tool" >/dev/null || die "$tool is needed"
done
[[ "$N" =~ ^[1-9][0-9]*$ ]] || die "N must be a positive integer, not '$N'"
[[ "$RUNS" =~ ^[1-9][0-9]*$ ]] || die "RUNS must be a positive integer, not '$RUNS'"
[[ "$PORT" =~ ^[0-9]+$ ]] || die "PORT must be a port number, not '$PORT'"
[[ -z "$BEFORE" || -x "$BEFORE" ]] || die "BEFORE_BIN $BEFORE is not an executable"

if [[ -z "${SWITCHYARD_BIN:-}" ]]; then
    say "Building switchyard (release) into $TARGET"
    (cd "$ROOT" && cargo build --release --quiet --bin switchyard)
fi
[[ -x "$SWITCHYARD" ]] || die "switchyard binary missing at $SWITCHYARD"

# A copy of the reference workspace, so run state never lands in the checkout and both
# builds read the very same files.
mkdir -p "$OUT"
rm -rf "$WS"
cp -r "$ROOT/flows" "$WS"
rm -rf "$WS/.switchyard"

# One sandbox for every run, served by the newer build: the external system stays the same
# process, so its own speed is not part of the before/after difference.
SANDBOX_PID=
stop_sandbox() {
    [[ -n "$SANDBOX_PID" ]] || return 0
    # Ctrl-C is the sandbox's documented stop; SIGKILL if it does not go within 5 s.
    kill -INT "$SANDBOX_PID" 2>/dev/null || true
    for _ in $(seq 1 50); do
        kill -0 "$SANDBOX_PID" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$SANDBOX_PID" 2>/dev/null || true
    wait "$SANDBOX_PID" 2>/dev/null || true
    SANDBOX_PID=
}
trap stop_sandbox EXIT
trap 'exit 130' INT TERM

say "Starting the sandbox ($N offers, seed $SEED) with $SWITCHYARD"
"$SWITCHYARD" sandbox --offers "$N" --seed "$SEED" --port "$PORT" \
    >"$OUT/sandbox.out" 2>"$OUT/sandbox.log" &
SANDBOX_PID=$!

# The sandbox prints `export NAME=URL` lines once it listens; wait for them, bounded.
deadline=$((SECONDS + START_TIMEOUT))
until grep -q '^Press Ctrl-C' "$OUT/sandbox.out" 2>/dev/null; do
    kill -0 "$SANDBOX_PID" 2>/dev/null ||
        die "the sandbox exited before listening; see $OUT/sandbox.log"
    ((SECONDS < deadline)) || die "the sandbox did not start within $START_TIMEOUT s"
    sleep 0.2
done
while read -r name value; do
    export "${name?}=$value"
done < <(sed -n 's/^export \([A-Z_]*\)=\(http:\/\/127\.0\.0\.1:[0-9]*\/[a-z]*\)$/\1 \2/p' \
    "$OUT/sandbox.out")
[[ -n "${MARKETPLACE_URL:-}" && -n "${STOREFRONT_URL:-}" && -n "${ALERTS_URL:-}" ]] ||
    die "no loopback URLs in the sandbox's output; see $OUT/sandbox.out"
# Not used by this flow, but the workspace warns on every run without it; the sandbox's
# default webhook secret keeps the run logs to the flow.
export ORDERS_WEBHOOK_SECRET=${ORDERS_WEBHOOK_SECRET:-sandbox-secret}
BASE=${MARKETPLACE_URL%/marketplace}
curl -fsS --max-time 10 "$BASE/_sandbox/health" >/dev/null || die "the sandbox does not answer"

# What a correct run must deliver: every valid offer, once.
curl -fsS --max-time 30 "$BASE/_sandbox/marketplace/summary" >"$OUT/summary.json"
read -r OFFERS VALID < <(python3 -c '
import json, sys
s = json.load(open(sys.argv[1]))
print(s["offers"], s["valid"])' "$OUT/summary.json")
say "The marketplace lists $OFFERS offers, $VALID of them valid"

# The storefront's write counters, as "requests records duplicates_suppressed faulted".
storefront_counts() {
    curl -fsS --max-time 60 "$BASE/_sandbox/storefront/received" | python3 -c '
import json, sys
r = json.load(sys.stdin)
print(r["requests"], len(r["records"]), r["duplicates_suppressed"], r["faulted"])'
}

# One timed run of build $2 (label $1) on fresh state; appends
# "wall user sys peak_rss_kib" to $OUT/$1.times and checks the run on its own.
run_once() {
    local label=$1 bin=$2 timing report before after
    rm -rf "$WS/.switchyard"
    before=$(storefront_counts)
    timing=$(mktemp)
    report="$OUT/$label-report.json"
    if ! /usr/bin/time -f '%e %U %S %M' -o "$timing" \
        timeout --kill-after=10 "$RUN_TIMEOUT" "$bin" run "$WS" "$FLOW" --json \
        >"$report" 2>"$OUT/$label-run.log"; then
        cat "$timing" >&2
        rm -f "$timing"
        die "$label run failed; see $OUT/$label-run.log"
    fi
    after=$(storefront_counts)
    # Every listed offer read, every valid one delivered and nothing else written: the
    # run's own report, and the storefront's counters moved by exactly this run's writes.
    python3 - "$report" "$OFFERS" "$VALID" "$before" "$after" <<'PY' ||
import json, sys
report = json.load(open(sys.argv[1]))
offers, valid = int(sys.argv[2]), int(sys.argv[3])
b = [int(x) for x in sys.argv[4].split()]
a = [int(x) for x in sys.argv[5].split()]
requests, records, replays, faulted = (y - x for x, y in zip(b, a))
problems = []
if report.get("stopped_early"):
    problems.append(f"stopped early: {report['stopped_early']}")
if report["read"] != offers:
    problems.append(f"read {report['read']}, the marketplace lists {offers}")
if report["delivered"] != valid:
    problems.append(f"delivered {report['delivered']}, {valid} offers are valid")
if requests != valid or records + replays != valid or faulted != 0:
    problems.append(
        f"the storefront saw {requests} writes ({records} new, {replays} replays, "
        f"{faulted} faulted) for {valid} valid offers")
for problem in problems:
    print(f"error: {problem}", file=sys.stderr)
sys.exit(1 if problems else 0)
PY
        die "$label run did not deliver every valid offer exactly once; see $report"
    tail -n 1 "$timing" >>"$OUT/$label.times"
    rm -f "$timing"
}

# Median of column $2 of file $1 (the lower middle for an even count).
median() {
    sort -g -k "$2,$2" "$1" | awk -v col="$2" '{ v[NR] = $col } END { print v[int((NR + 1) / 2)] }'
}

: >"$OUT/after.times"
: >"$OUT/before.times"
# The storefront keeps every idempotency key it accepted, so only the very first run stores
# new records and every later one is answered as replays. One untimed, checked warm-up run
# gives every timed run the same storefront (and warms the page cache for both builds).
say "Warm-up: one untimed run so every timed run meets the same storefront"
run_once warmup "$SWITCHYARD"
for run in $(seq 1 "$RUNS"); do
    if [[ -n "$BEFORE" ]]; then
        say "Run $run/$RUNS: switchyard before (fresh state)"
        run_once before "$BEFORE"
    fi
    say "Run $run/$RUNS: switchyard after (fresh state)"
    run_once after "$SWITCHYARD"
done

# Columns: wall, user, sys, peak RSS; CPU is user + sys.
summarise() {
    awk '{ print $1, $2 + $3, $4 }' "$OUT/$1.times" >"$OUT/$1.cpu"
    printf '%s %s %s\n' "$(median "$OUT/$1.cpu" 1)" "$(median "$OUT/$1.cpu" 2)" \
        "$(median "$OUT/$1.cpu" 3)"
}

echo
echo "http sink benchmark: $OFFERS offers listed ($VALID valid, PUT one by one), median of $RUNS whole-process runs"
printf '%-12s %12s %10s %10s %14s\n' "program" "records/s" "wall s" "CPU s" "peak RSS MiB"
row() {
    read -r wall cpu rss < <(summarise "$2")
    awk -v name="$1" -v n="$OFFERS" -v w="$wall" -v c="$cpu" -v r="$rss" 'BEGIN {
        printf "%-12s %12.0f %10.2f %10.2f %14.1f\n", name, (w > 0) ? n / w : 0, w, c, r / 1024
    }'
}
if [[ -n "$BEFORE" ]]; then
    row before before
fi
row after after
if [[ -n "$BEFORE" ]]; then
    # Round by round: after/before throughput is before wall / after wall.
    paste -d ' ' "$OUT/before.cpu" "$OUT/after.cpu" | awk '{
        printf "%s %.4f %.4f %.4f\n", NR, ($4 > 0) ? $1 / $4 : 0, ($2 > 0) ? $5 / $2 : 0, \
            ($3 > 0) ? $6 / $3 : 0
    }' >"$OUT/pairs"
    echo "pairs after/before (wall s, CPU s, peak RSS MiB):"
    paste -d ' ' "$OUT/before.cpu" "$OUT/after.cpu" | awk '{
        printf "  run %d: %.2f/%.2f s, %.2f/%.2f CPU s, %.1f/%.1f MiB\n", NR, $4, $1, $5, $2, \
            $6 / 1024, $3 / 1024
    }'
    awk -v t="$(median "$OUT/pairs" 2)" -v c="$(median "$OUT/pairs" 3)" \
        -v r="$(median "$OUT/pairs" 4)" 'BEGIN {
        printf "ratio after/before, median of pairs: %.2f (records/s), %.2f (CPU s), %.2f (peak RSS)\n", t, c, r
    }'
fi
