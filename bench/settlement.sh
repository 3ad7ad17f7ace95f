#!/usr/bin/env bash
# The shared settlement benchmark (/work/shared/bench): the plain `settle-limit` against
# `switchyard reconcile examples/settlement-bench settlement-reconciliation`, whole-process,
# same input, in alternating pairs; both reports checked with verify_settlement.py.
#
#   N=1000000 RUNS=3 bench/settlement.sh
#
# Environment: N (statement lines, default 1000000), RUNS (default 3), SHARED (the shared
# bench folder, default /work/shared/bench), DATA (where the workload is generated, default
# bench-out/settlement-N), CARGO_TARGET_DIR (where switchyard is built), SWITCHYARD_BIN
# (measure this binary instead of building one). See bench/README.md.
set -euo pipefail

N=${N:-1000000}
RUNS=${RUNS:-3}
SHARED=${SHARED:-/work/shared/bench}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT="$ROOT/bench-out"
DATA=${DATA:-$OUT/settlement-$N}
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
SWITCHYARD=${SWITCHYARD_BIN:-$TARGET/release/switchyard}
BASELINE_SRC="$OUT/baseline-src"
BASELINE="$BASELINE_SRC/target/release/settle-limit"
FLOW=settlement-reconciliation

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

[[ -x /usr/bin/time ]] || die "/usr/bin/time (GNU time) is needed for peak RSS"
[[ -d "$SHARED/baseline" ]] || die "no shared bench at $SHARED"
[[ "$RUNS" =~ ^[1-9][0-9]*$ ]] || die "RUNS must be a positive integer, not '$RUNS'"
mkdir -p "$OUT"

if [[ ! -s "$DATA/statement.jsonl" || ! -s "$DATA/ledger.csv" ]]; then
    say "Generating $N statement lines and their ledger into $DATA"
    python3 "$SHARED/gen_settlement.py" -n "$N" --seed 7 -o "$DATA"
fi

if [[ ! -x "$BASELINE" ]]; then
    say "Building the baseline in $BASELINE_SRC (the shared copy is read-only)"
    rm -rf "$BASELINE_SRC/src"
    mkdir -p "$BASELINE_SRC"
    cp -r "$SHARED/baseline/." "$BASELINE_SRC/"
    chmod -R u+w "$BASELINE_SRC"
    CARGO_TARGET_DIR="$BASELINE_SRC/target" cargo build --release --quiet \
        --manifest-path "$BASELINE_SRC/Cargo.toml"
fi
[[ -x "$BASELINE" ]] || die "baseline binary missing at $BASELINE"

if [[ -z "${SWITCHYARD_BIN:-}" ]]; then
    say "Building switchyard (release) into $TARGET"
    (cd "$ROOT" && cargo build --release --quiet --bin switchyard)
fi
[[ -x "$SWITCHYARD" ]] || die "switchyard binary missing at $SWITCHYARD"

# A private copy of the example whose data folder is the workload (the sample stays as is).
WS="$OUT/settlement-ws"
rm -rf "$WS"
mkdir -p "$WS"
cp -r "$ROOT/examples/settlement-bench/." "$WS/"
rm -rf "$WS/data" "$WS/.switchyard"
ln -sfn "$DATA" "$WS/data"

# Runs a command under GNU time; appends "wall_seconds peak_rss_kib cpu_seconds" to $1.
measure() {
    local results=$1
    shift
    local timing
    timing=$(mktemp)
    if ! /usr/bin/time -f '%e %M %U %S' -o "$timing" "$@"; then
        rm -f "$timing"
        die "command failed: $*"
    fi
    tail -n 1 "$timing" | awk '{ printf "%s %s %.2f\n", $1, $2, $3 + $4 }' >>"$results"
    rm -f "$timing"
}

# Median of column $2 of file $1 (the lower middle for an even count).
median() {
    sort -g -k "$2,$2" "$1" | awk -v col="$2" '{ v[NR] = $col } END { print v[int((NR + 1) / 2)] }'
}

: >"$OUT/settle-baseline.times"
: >"$OUT/settle-switchyard.times"
for run in $(seq 1 "$RUNS"); do
    say "Run $run/$RUNS: settle-limit"
    measure "$OUT/settle-baseline.times" "$BASELINE" "$DATA" \
        "$OUT/settle-baseline-variances.jsonl" "$OUT/settle-baseline-totals.jsonl"
    say "Run $run/$RUNS: switchyard reconcile (fresh state: every variance dead-lettered)"
    rm -rf "$WS/.switchyard" "$OUT/settle-report"
    measure "$OUT/settle-switchyard.times" "$SWITCHYARD" reconcile "$WS" "$FLOW" \
        --out "$OUT/settle-report" >"$OUT/settle-switchyard.txt" 2>"$OUT/settle-switchyard.log"
done

say "Verifying the baseline's report"
python3 "$SHARED/verify_settlement.py" "$DATA" \
    "$OUT/settle-baseline-variances.jsonl" "$OUT/settle-baseline-totals.jsonl" ||
    die "the baseline's report does not match the reference"
say "Verifying switchyard's report"
python3 "$SHARED/verify_settlement.py" "$DATA" \
    "$OUT/settle-report/variances.jsonl" "$OUT/settle-report/totals.jsonl" ||
    die "switchyard's report does not match the reference"

lines=$(wc -l <"$DATA/statement.jsonl")
base_wall=$(median "$OUT/settle-baseline.times" 1)
base_rss=$(median "$OUT/settle-baseline.times" 2)
base_cpu=$(median "$OUT/settle-baseline.times" 3)
ours_wall=$(median "$OUT/settle-switchyard.times" 1)
ours_rss=$(median "$OUT/settle-switchyard.times" 2)
ours_cpu=$(median "$OUT/settle-switchyard.times" 3)

echo
echo "settlement benchmark: $lines statement lines, median of $RUNS whole-process runs"
awk -v n="$lines" -v bw="$base_wall" -v br="$base_rss" -v bc="$base_cpu" \
    -v ow="$ours_wall" -v orss="$ours_rss" -v oc="$ours_cpu" 'BEGIN {
    b_rate = (bw > 0) ? n / bw : 0
    o_rate = (ow > 0) ? n / ow : 0
    printf "%-12s %12s %8s %8s %14s\n", "program", "lines/s", "wall s", "CPU s", "peak RSS MiB"
    printf "%-12s %12.0f %8.2f %8.2f %14.1f\n", "settle-limit", b_rate, bw, bc, br / 1024
    printf "%-12s %12.0f %8.2f %8.2f %14.1f\n", "switchyard", o_rate, ow, oc, orss / 1024
    printf "ratio ours/baseline: %.2f (lines/s), %.2f (peak RSS)\n",
        (b_rate > 0) ? o_rate / b_rate : 0, (br > 0) ? orss / br : 0
}'
