-- One row per ENDED or EXPIRED session whose final meter charged something:
-- what the relayer settles from the consumer's pool on chain.
CREATE TABLE settlements (
    session_id      TEXT PRIMARY KEY REFERENCES sessions (id),
    consumer        TEXT NOT NULL,
    operator        TEXT NOT NULL,
    -- Strictly increasing per consumer: the contract's replay guard.
    sequence        INTEGER NOT NULL,
    rate            INTEGER NOT NULL,
    seconds         INTEGER NOT NULL,
    to_amount       INTEGER NOT NULL,
    fee_amount      INTEGER NOT NULL,
    state           TEXT NOT NULL,
    tx_hash         TEXT,
    nonce           INTEGER,
    block           INTEGER,
    attempts        INTEGER NOT NULL DEFAULT 0,
    last_error      TEXT,
    next_attempt_ms INTEGER NOT NULL,
    queued_ms       INTEGER NOT NULL,
    updated_ms      INTEGER NOT NULL,
    UNIQUE (consumer, sequence)
);
CREATE INDEX settlements_open ON settlements (state, next_attempt_ms)
    WHERE state IN ('PENDING', 'SUBMITTED');
-- Credit counts charges not yet settled.
CREATE INDEX sessions_wallet_charged ON sessions (consumer_wallet)
    WHERE state IN ('ENDED', 'EXPIRED') AND charged > 0;
