#!/usr/bin/env bash
# The shared offers benchmark (/work/shared/bench): the plain baseline against
# `switchyard run examples/bench-offers offers-to-feed`, whole-process, same input.
#
#   N=1000000 RUNS=5 bench/offers.sh
#
# Environment: N (lines, default 1000000), RUNS (default 5), SHARED (the shared bench
# folder, default /work/shared/bench), CARGO_TARGET_DIR (where switchyard is built),
# SWITCHYARD_BIN (measure this switchyard binary instead of building one, e.g. an older build),
# BEFORE_BIN (also measure this older switchyard binary, in turn with the others in every run,
# so a change is measured before and after in one invocation).
# See bench/README.md for what it measures and how to read the table.
set -euo pipefail

N=${N:-1000000}
RUNS=${RUNS:-5}
SHARED=${SHARED:-/work/shared/bench}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT="$ROOT/bench-out"
WS="$ROOT/examples/bench-offers"
INPUT="$OUT/offers-$N.jsonl"
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
SWITCHYARD=${SWITCHYARD_BIN:-$TARGET/release/switchyard}
BASELINE_SRC="$OUT/baseline-src"
BASELINE="$BASELINE_SRC/target/release/offers-limit"

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

[[ -x /usr/bin/time ]] || die "/usr/bin/time (GNU time) is needed for peak RSS"
[[ -d "$SHARED/baseline" ]] || die "no shared bench at $SHARED"
[[ "$RUNS" =~ ^[1-9][0-9]*$ ]] || die "RUNS must be a positive integer, not '$RUNS'"
mkdir -p "$OUT"

if [[ ! -s "$INPUT" ]]; then
    say "Generating $N offers into $INPUT"
    python3 "$SHARED/gen_offers.py" -n "$N" --seed 42 -o "$INPUT.tmp"
    mv "$INPUT.tmp" "$INPUT"
fi

say "Building the baseline in $BASELINE_SRC (the shared copy is read-only)"
rm -rf "$BASELINE_SRC/src"
mkdir -p "$BASELINE_SRC"
cp -r "$SHARED/baseline/." "$BASELINE_SRC/"
chmod -R u+w "$BASELINE_SRC"
CARGO_TARGET_DIR="$BASELINE_SRC/target" cargo build --release --quiet \
    --manifest-path "$BASELINE_SRC/Cargo.toml"
[[ -x "$BASELINE" ]] || die "baseline binary missing at $BASELINE"

if [[ -z "${SWITCHYARD_BIN:-}" ]]; then
    say "Building switchyard (release) into $TARGET"
    (cd "$ROOT" && cargo build --release --quiet --bin switchyard)
fi
[[ -x "$SWITCHYARD" ]] || die "switchyard binary missing at $SWITCHYARD"

mkdir -p "$WS/data"
ln -sfn "$INPUT" "$WS/data/offers.jsonl"

# Runs a command under GNU time; appends "wall_seconds peak_rss_kib" to $1.
measure() {
    local results=$1
    shift
    local timing
    timing=$(mktemp)
    if ! /usr/bin/time -f '%e %M' -o "$timing" "$@"; then
        rm -f "$timing"
        die "command failed: $*"
    fi
    tail -n 1 "$timing" >>"$results"
    rm -f "$timing"
}

# Median of column $2 of file $1 (the lower middle for an even count).
median() {
    sort -g -k "$2,$2" "$1" | awk -v col="$2" '{ v[NR] = $col } END { print v[int((NR + 1) / 2)] }'
}

: >"$OUT/baseline.times"
: >"$OUT/switchyard.times"
: >"$OUT/before.times"
BEFORE=${BEFORE_BIN:-}
[[ -z "$BEFORE" || -x "$BEFORE" ]] || die "BEFORE_BIN $BEFORE is not an executable"
for run in $(seq 1 "$RUNS"); do
    if [[ -n "$BEFORE" ]]; then
        say "Run $run/$RUNS: switchyard before (fresh state)"
        rm -rf "$WS/.switchyard" "$WS/out"
        measure "$OUT/before.times" "$BEFORE" run "$WS" offers-to-feed \
            2>"$OUT/before-run.log"
    fi
    say "Run $run/$RUNS: baseline"
    measure "$OUT/baseline.times" "$BASELINE" "$INPUT" \
        "$OUT/baseline-valid.jsonl" "$OUT/baseline-rejects.jsonl"
    say "Run $run/$RUNS: switchyard (fresh state)"
    rm -rf "$WS/.switchyard" "$WS/out"
    # One warning per dead letter goes to stderr; keep it out of the terminal.
    measure "$OUT/switchyard.times" "$SWITCHYARD" run "$WS" offers-to-feed \
        2>"$OUT/switchyard-run.log"
done

say "Exporting switchyard's dead letters"
: >"$OUT/export.times"
measure "$OUT/export.times" "$SWITCHYARD" dlq export "$WS" --flow offers-to-feed \
    --key-field offer_id --status all --out "$OUT/switchyard-rejects.jsonl"

say "Verifying the baseline's outputs"
python3 "$SHARED/verify_outputs.py" "$INPUT" \
    "$OUT/baseline-valid.jsonl" "$OUT/baseline-rejects.jsonl" ||
    die "baseline outputs do not match the reference"
say "Verifying switchyard's outputs"
python3 "$SHARED/verify_outputs.py" "$INPUT" \
    "$WS/out/offers.jsonl" "$OUT/switchyard-rejects.jsonl" ||
    die "switchyard outputs do not match the reference"

base_wall=$(median "$OUT/baseline.times" 1)
base_rss=$(median "$OUT/baseline.times" 2)
ours_wall=$(median "$OUT/switchyard.times" 1)
ours_rss=$(median "$OUT/switchyard.times" 2)
export_wall=$(median "$OUT/export.times" 1)

echo
echo "offers benchmark: $N lines, median of $RUNS whole-process runs"
awk -v n="$N" -v bw="$base_wall" -v br="$base_rss" -v ow="$ours_wall" -v orss="$ours_rss" \
    -v ew="$export_wall" 'BEGIN {
    br_mib = br / 1024; or_mib = orss / 1024
    b_rate = (bw > 0) ? n / bw : 0
    o_rate = (ow > 0) ? n / ow : 0
    printf "%-12s %12s %10s %14s\n", "program", "records/s", "wall s", "peak RSS MiB"
    printf "%-12s %12.0f %10.2f %14.1f\n", "baseline", b_rate, bw, br_mib
    printf "%-12s %12.0f %10.2f %14.1f\n", "switchyard", o_rate, ow, or_mib
    printf "ratio ours/baseline: %.2f (records/s)\n", (b_rate > 0) ? o_rate / b_rate : 0
    printf "dlq export (not in the run figures): %.2f s\n", ew
}'
if [[ -n "$BEFORE" ]]; then
    before_wall=$(median "$OUT/before.times" 1)
    before_rss=$(median "$OUT/before.times" 2)
    awk -v n="$N" -v bw="$before_wall" -v br="$before_rss" -v ow="$ours_wall" 'BEGIN {
        printf "%-12s %12.0f %10.2f %14.1f\n", "before", n / bw, bw, br / 1024
        printf "ratio after/before: %.2f (records/s)\n", bw / ow
    }'
fi
