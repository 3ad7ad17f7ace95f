-- The reference finance ledger: one row per journal line, with the financial references a
-- reconciliation joins on. The SQL connector runs this file when a flow posting into the
-- ledger opens (the system's `schema: sql/ledger.sql`), so it is idempotent, and it is
-- written in the SQL both PostgreSQL and SQLite (the embedded fallback) take:
--   * no CREATE SCHEMA: SQLite has none; the table sits in PostgreSQL's search_path;
--   * amount is `numeric(18, 4)`: exact in PostgreSQL; on SQLite the connector creates
--     numeric columns as TEXT, so the amount is kept as posted ("0.10" stays "0.10") and never
--     becomes a float;
--   * recorded_at defaults to CURRENT_TIMESTAMP on both: it is the cursor a flow reading the
--     ledger back pages on, with journal_id as the key.
-- The idempotency key is UNIQUE: the connector inserts with ON CONFLICT (idempotency_key) DO
-- NOTHING in the posting transaction, so a batch written again after a crash posts nothing
-- twice, and a key stored with other content is refused, not overwritten.
CREATE TABLE IF NOT EXISTS journal_lines (
    journal_id                 varchar(64) NOT NULL PRIMARY KEY,
    -- The statement line this journal line posts (its transaction_id).
    reference                  varchar(64) NOT NULL,
    order_id                   varchar(64),
    order_line_id              varchar(64),
    accounting_document_number varchar(64),
    billing_cycle_id           varchar(64) NOT NULL,
    account                    varchar(64) NOT NULL,
    amount                     numeric(18, 4) NOT NULL,
    currency                   char(3) NOT NULL CHECK (length(currency) = 3),
    posted_at                  timestamptz NOT NULL,
    recorded_at                timestamptz NOT NULL DEFAULT CURRENT_TIMESTAMP,
    idempotency_key            varchar(200) NOT NULL UNIQUE
);

CREATE INDEX IF NOT EXISTS journal_lines_reference ON journal_lines (reference);
CREATE INDEX IF NOT EXISTS journal_lines_cycle ON journal_lines (billing_cycle_id, currency);
CREATE INDEX IF NOT EXISTS journal_lines_recorded ON journal_lines (recorded_at, journal_id);

-- The marketplace's statement as received: one row per seller transaction line, from the
-- transaction-log API and from statement files dropped by SFTP (both post here, keyed by the
-- transaction ID, so a line received both ways is stored once). The reconciliation reads it
-- against journal_lines. Text columns keep what the marketplace sent; date_created stays text
-- so a repeat of the same line compares equal on both backends.
CREATE TABLE IF NOT EXISTS statement_lines (
    transaction_id             varchar(64) NOT NULL PRIMARY KEY,
    billing_cycle_id           varchar(64) NOT NULL,
    shop_id                    varchar(64) NOT NULL,
    type                       varchar(32) NOT NULL,
    order_id                   varchar(64),
    order_line_id              varchar(64),
    amount                     numeric(18, 4) NOT NULL,
    currency                   char(3) NOT NULL CHECK (length(currency) = 3),
    date_created               varchar(40) NOT NULL,
    accounting_document_number varchar(64),
    payment_state              varchar(32),
    reason                     varchar(64),
    received_at                timestamptz NOT NULL DEFAULT CURRENT_TIMESTAMP,
    idempotency_key            varchar(200) NOT NULL UNIQUE
);

CREATE INDEX IF NOT EXISTS statement_lines_cycle ON statement_lines (billing_cycle_id, currency);
