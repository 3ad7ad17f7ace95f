-- The table both sides of the posting benchmark write: switchyard into bench_ledger.journal,
-- `\copy` into bench_ledger.journal_copy (bench/ledger.sh creates that one LIKE this one).
-- journal_id is the idempotency key, under the PRIMARY KEY: the connector inserts with
-- ON CONFLICT (journal_id) DO NOTHING, so a batch written again posts nothing twice.
CREATE SCHEMA IF NOT EXISTS bench_ledger;

CREATE TABLE IF NOT EXISTS bench_ledger.journal (
    journal_id       text PRIMARY KEY,
    reference        text NOT NULL,
    account          text NOT NULL,
    amount           numeric(18, 4) NOT NULL,
    currency         char(3) NOT NULL,
    posted_at        timestamptz NOT NULL,
    billing_cycle_id text NOT NULL
);
