-- Outbound webhooks: where a workspace wants its sessions' events POSTed.
-- The secret signs every delivery (HMAC-SHA256), so it is kept as given,
-- unlike API keys, which only need to be recognised.
CREATE TABLE webhooks (
    id           TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces (id),
    url          TEXT NOT NULL,
    -- Comma-separated event names (`session.live,…`).
    events       TEXT NOT NULL,
    secret       TEXT NOT NULL,
    created_ms   INTEGER NOT NULL
);
CREATE INDEX webhooks_workspace ON webhooks (workspace_id);

-- One row per event that some webhook was subscribed to, written in the
-- transaction that made it happen. A session passes each state once, so
-- (session, type) names an event; the payload is the session or settlement
-- as it was then.
CREATE TABLE webhook_events (
    id         TEXT PRIMARY KEY,
    type       TEXT NOT NULL,
    session_id TEXT NOT NULL,
    payload    TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    UNIQUE (session_id, type)
);

-- The outbox: one row per (webhook, event). `seq` orders each webhook's
-- deliveries: only its lowest PENDING one is tried.
CREATE TABLE webhook_deliveries (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    webhook_id      TEXT NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    event_id        TEXT NOT NULL REFERENCES webhook_events (id),
    state           TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    last_status     INTEGER,
    last_error      TEXT,
    next_attempt_ms INTEGER NOT NULL,
    delivered_ms    INTEGER,
    updated_ms      INTEGER NOT NULL,
    UNIQUE (webhook_id, event_id)
);
CREATE INDEX webhook_deliveries_pending ON webhook_deliveries (webhook_id, seq)
    WHERE state = 'PENDING';
