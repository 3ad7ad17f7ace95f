#!/usr/bin/env bash
# The posting benchmark (issue 9): the 1,000,000 journal lines of the shared settlement
# workload's ledger.csv posted into PostgreSQL effectively once by a real
# `switchyard run examples/ledger-bench post-journal`, beside a plain
# `psql -c "\copy ... FROM ledger.csv CSV HEADER"` into a table of the same shape, in
# alternating pairs, whole process.
#
#   LEDGER_URL=postgres://postgres@127.0.0.1/test N=1000000 RUNS=3 bench/ledger.sh
#
# Environment: LEDGER_URL (the PostgreSQL database, default postgres://postgres@127.0.0.1/test;
# the script drops and creates the schema bench_ledger there), N (lines of the statement
# generated, default 1000000), RUNS (pairs, default 3), SHARED (the shared bench folder,
# default /work/shared/bench), DATA (where the generated files go, default bench-out/ledger-$N),
# CARGO_TARGET_DIR (where switchyard is built), SWITCHYARD_BIN (measure this binary instead of
# building one), BEFORE_BIN (also measure this older build, in turn with the others, to show
# a change before and after in one invocation), BATCH (records per batch for `switchyard run`,
# default its own 10000).
# See bench/README.md for what it measures and how to read the table.
set -euo pipefail

N=${N:-1000000}
RUNS=${RUNS:-3}
SHARED=${SHARED:-/work/shared/bench}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT="$ROOT/bench-out"
DATA=${DATA:-$OUT/ledger-$N}
WS="$ROOT/examples/ledger-bench"
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
SWITCHYARD=${SWITCHYARD_BIN:-$TARGET/release/switchyard}
export LEDGER_URL=${LEDGER_URL:-postgres://postgres@127.0.0.1/test}
BATCH=${BATCH:-}
BEFORE=${BEFORE_BIN:-}

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

[[ -x /usr/bin/time ]] || die "/usr/bin/time (GNU time) is needed for peak RSS"
command -v psql >/dev/null || die "psql is needed (the \\copy side and the checks)"
[[ "$RUNS" =~ ^[1-9][0-9]*$ ]] || die "RUNS must be a positive integer, not '$RUNS'"
[[ -z "$BEFORE" || -x "$BEFORE" ]] || die "BEFORE_BIN $BEFORE is not an executable"
psql "$LEDGER_URL" -qAtc 'SELECT 1' >/dev/null || die "PostgreSQL at LEDGER_URL does not answer"
mkdir -p "$OUT"

INPUT="$DATA/ledger.csv"
if [[ ! -s "$INPUT" ]]; then
    say "Generating the settlement workload ($N statement lines) into $DATA"
    python3 "$SHARED/gen_settlement.py" -n "$N" --seed 7 -o "$DATA.tmp"
    rm -f "$DATA.tmp/statement.jsonl" # only the ledger is posted
    rm -rf "$DATA"
    mv "$DATA.tmp" "$DATA"
fi
LINES=$(($(wc -l <"$INPUT") - 1))

if [[ -z "${SWITCHYARD_BIN:-}" ]]; then
    say "Building switchyard (release) into $TARGET"
    (cd "$ROOT" && cargo build --release --quiet --bin switchyard)
fi
[[ -x "$SWITCHYARD" ]] || die "switchyard binary missing at $SWITCHYARD"

mkdir -p "$WS/data"
ln -sfn "$INPUT" "$WS/data/ledger.csv"

# Quiet: no NOTICE of DROP ... CASCADE in the table (PGOPTIONS is read by psql, not switchyard).
export PGOPTIONS="${PGOPTIONS:-} -c client_min_messages=warning"
sql() { psql "$LEDGER_URL" -v ON_ERROR_STOP=1 -qAtc "$1"; }

# Both tables fresh and empty, of the same shape: the workspace's own sql/journal.sql and a
# copy of it (same columns, same PRIMARY KEY), so both sides pay the same index upkeep.
fresh_tables() {
    sql "DROP SCHEMA IF EXISTS bench_ledger CASCADE" >/dev/null
    psql "$LEDGER_URL" -v ON_ERROR_STOP=1 -q -f "$WS/sql/journal.sql" >/dev/null
    sql "CREATE TABLE bench_ledger.journal_copy (LIKE bench_ledger.journal INCLUDING ALL)" \
        >/dev/null
}

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
    tail -n 1 "$timing" | awk '{ print $1, $2, $3 + $4 }' >>"$results"
    rm -f "$timing"
}

# Median of column $2 of file $1 (the lower middle for an even count).
median() {
    sort -g -k "$2,$2" "$1" | awk -v col="$2" '{ v[NR] = $col } END { print v[int((NR + 1) / 2)] }'
}

# What a table holds: rows, distinct journal ids, and the sum of amounts per currency.
contents() {
    sql "SELECT count(*), count(DISTINCT journal_id),
                (SELECT string_agg(currency || '=' || s, ' ' ORDER BY currency)
                   FROM (SELECT currency, sum(amount) AS s FROM $1 GROUP BY 1) AS t)
           FROM $1"
}

run_args=(run "$WS" post-journal --json)
[[ -n "$BATCH" ]] && run_args+=(--batch-size "$BATCH")

: >"$OUT/ledger-copy.times"
: >"$OUT/ledger-switchyard.times"
: >"$OUT/ledger-before.times"
# One timed `switchyard run` of build $2 (times into $1) on fresh state and an empty table,
# checked against what `\copy` put into its own table.
post_once() {
    local times=$1 bin=$2
    sql "TRUNCATE bench_ledger.journal" >/dev/null
    rm -rf "$WS/.switchyard"
    measure "$times" "$bin" "${run_args[@]}" >"$OUT/ledger-report.json" 2>"$OUT/ledger-run.log"
    posted=$(contents bench_ledger.journal)
    [[ "$copied" == "$posted" ]] || die "the tables differ: copy $copied, switchyard $posted"
    [[ "${posted%%|*}" == "$LINES" ]] || die "switchyard posted ${posted%%|*} of $LINES lines"
}
for run in $(seq 1 "$RUNS"); do
    fresh_tables
    say "Run $run/$RUNS: psql \\copy"
    measure "$OUT/ledger-copy.times" psql "$LEDGER_URL" -v ON_ERROR_STOP=1 -qc \
        "\\copy bench_ledger.journal_copy (journal_id, reference, account, amount, currency, posted_at, billing_cycle_id) FROM '$INPUT' CSV HEADER"
    copied=$(contents bench_ledger.journal_copy)
    if [[ -n "$BEFORE" ]]; then
        say "Run $run/$RUNS: switchyard run, before (fresh state, empty table)"
        post_once "$OUT/ledger-before.times" "$BEFORE"
    fi
    say "Run $run/$RUNS: switchyard run (fresh state, empty table)"
    post_once "$OUT/ledger-switchyard.times" "$SWITCHYARD"
done

say "Effectively once: the same file again with the state store lost posts nothing"
before=$(sql "SELECT md5(string_agg(journal_id || amount::text, ',' ORDER BY journal_id)) FROM bench_ledger.journal")
rm -rf "$WS/.switchyard"
"$SWITCHYARD" "${run_args[@]}" >"$OUT/ledger-rerun.json" 2>>"$OUT/ledger-run.log"
after=$(sql "SELECT md5(string_agg(journal_id || amount::text, ',' ORDER BY journal_id)) FROM bench_ledger.journal")
[[ "$before" == "$after" ]] || die "the rerun changed the ledger"
rm -rf "$WS/.switchyard"
sql "DROP SCHEMA IF EXISTS bench_ledger CASCADE" >/dev/null

copy_wall=$(median "$OUT/ledger-copy.times" 1)
copy_rss=$(median "$OUT/ledger-copy.times" 2)
ours_wall=$(median "$OUT/ledger-switchyard.times" 1)
ours_rss=$(median "$OUT/ledger-switchyard.times" 2)
ours_cpu=$(median "$OUT/ledger-switchyard.times" 3)

echo
echo "ledger posting benchmark: $LINES journal lines (gen_settlement.py -n $N --seed 7),"
echo "median of $RUNS alternating pairs, whole process (server time included in wall)"
awk -v n="$LINES" -v cw="$copy_wall" -v cr="$copy_rss" -v ow="$ours_wall" -v orss="$ours_rss" \
    -v oc="$ours_cpu" 'BEGIN {
    printf "%-20s %12s %10s %14s\n", "program", "rows/s", "wall s", "peak RSS MiB"
    printf "%-20s %12.0f %10.2f %14.1f\n", "psql \\copy", n / cw, cw, cr / 1024
    printf "%-20s %12.0f %10.2f %14.1f   (client CPU %.2f s)\n", "switchyard run", n / ow, ow, orss / 1024, oc
    printf "ratio switchyard/copy: %.2f (rows/s; target >= 0.50)\n", cw / ow
}'
if [[ -n "$BEFORE" ]]; then
    before_wall=$(median "$OUT/ledger-before.times" 1)
    before_rss=$(median "$OUT/ledger-before.times" 2)
    before_cpu=$(median "$OUT/ledger-before.times" 3)
    # Round by round, so a slow moment of the machine weighs on both builds alike.
    paste -d ' ' "$OUT/ledger-before.times" "$OUT/ledger-switchyard.times" |
        awk '{ printf "%.4f %.4f\n", $1 / $4, $6 / $3 }' >"$OUT/ledger-pairs"
    awk -v n="$LINES" -v bw="$before_wall" -v br="$before_rss" -v bc="$before_cpu" \
        -v t="$(median "$OUT/ledger-pairs" 1)" -v c="$(median "$OUT/ledger-pairs" 2)" 'BEGIN {
        printf "%-20s %12.0f %10.2f %14.1f   (client CPU %.2f s)\n", "switchyard before", n / bw, bw, br / 1024, bc
        printf "ratio after/before, median of pairs: %.2f (rows/s), %.2f (client CPU)\n", t, c
    }'
fi
