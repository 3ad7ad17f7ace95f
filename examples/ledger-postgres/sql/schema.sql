-- The ledger the example posts into. Run once: psql "$LEDGER_URL" -f sql/schema.sql
--
-- One journal line per paid order. The idempotency key is UNIQUE: the connector inserts with
-- ON CONFLICT (idempotency_key) DO NOTHING, so a batch written again after a crash posts
-- nothing twice. posted_at is assigned by the database (clock_timestamp()), which is what
-- lets the read-back flow page on (posted_at, id) without skipping a late commit.
CREATE SCHEMA IF NOT EXISTS ledger;

CREATE TABLE IF NOT EXISTS ledger.journal (
    id              bigserial PRIMARY KEY,
    idempotency_key text NOT NULL UNIQUE,
    entry_type      text NOT NULL,
    order_id        text NOT NULL,
    seller_id       text NOT NULL,
    channel         text NOT NULL,
    account         text NOT NULL,
    -- A payment is posted positive; refunds and chargebacks are other entry types.
    amount          numeric(18, 4) NOT NULL CHECK (amount > 0),
    currency        char(3) NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    commission      numeric(18, 4) NOT NULL CHECK (commission >= 0),
    booked_at       timestamptz NOT NULL,
    posted_at       timestamptz NOT NULL DEFAULT clock_timestamp()
);

CREATE INDEX IF NOT EXISTS journal_posted_at_id ON ledger.journal (posted_at, id);
