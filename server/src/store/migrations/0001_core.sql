CREATE TABLE workspaces (
    id                TEXT PRIMARY KEY,
    slug              TEXT NOT NULL UNIQUE,
    name              TEXT NOT NULL,
    wallet            TEXT NOT NULL,
    roles             TEXT NOT NULL,
    availability      TEXT NOT NULL,
    coverage_lat      REAL,
    coverage_lng      REAL,
    coverage_radius_m INTEGER,
    device_kind       TEXT,
    auto_accept       INTEGER NOT NULL,
    offer_timeout_s   INTEGER NOT NULL,
    idle_since_ms     INTEGER NOT NULL,
    created_ms        INTEGER NOT NULL
);
CREATE INDEX workspaces_wallet ON workspaces (wallet);

CREATE TABLE challenges (
    nonce      TEXT PRIMARY KEY,
    wallet     TEXT NOT NULL,
    purpose    TEXT NOT NULL,
    message    TEXT NOT NULL,
    expires_ms INTEGER NOT NULL
);

CREATE TABLE api_keys (
    id           TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces (id),
    hash         BLOB NOT NULL UNIQUE,
    prefix       TEXT NOT NULL,
    label        TEXT NOT NULL,
    environment  TEXT NOT NULL,
    scopes       TEXT NOT NULL,
    created_ms   INTEGER NOT NULL,
    revoked_ms   INTEGER
);
CREATE INDEX api_keys_workspace ON api_keys (workspace_id);

CREATE TABLE quotes (
    id           TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces (id),
    lat          REAL NOT NULL,
    lng          REAL NOT NULL,
    duration_s   INTEGER NOT NULL,
    rate         INTEGER NOT NULL,
    supply_bps   INTEGER NOT NULL,
    demand_bps   INTEGER NOT NULL,
    corridor_bps INTEGER NOT NULL,
    created_ms   INTEGER NOT NULL,
    expires_ms   INTEGER NOT NULL,
    used_ms      INTEGER
);

CREATE TABLE sessions (
    id               TEXT PRIMARY KEY,
    state            TEXT NOT NULL,
    lat              REAL NOT NULL,
    lng              REAL NOT NULL,
    geofence_m       INTEGER NOT NULL,
    max_duration_s   INTEGER NOT NULL,
    wait_timeout_s   INTEGER NOT NULL,
    rate             INTEGER NOT NULL,
    consumer_ws      TEXT NOT NULL REFERENCES workspaces (id),
    consumer_wallet  TEXT NOT NULL,
    operator_ws      TEXT REFERENCES workspaces (id),
    quote_id         TEXT REFERENCES quotes (id),
    offer_ws         TEXT,
    offer_expires_ms INTEGER,
    created_ms       INTEGER NOT NULL,
    assigned_ms      INTEGER,
    started_ms       INTEGER,
    ended_ms         INTEGER,
    expiry_reason    TEXT,
    media_ref        TEXT,
    whip_url         TEXT,
    whep_url         TEXT,
    clean_s          INTEGER,
    failed_s         INTEGER,
    charged          INTEGER,
    fee              INTEGER,
    earned           INTEGER,
    fee_bps          INTEGER
);
CREATE INDEX sessions_consumer ON sessions (consumer_ws, created_ms);
CREATE INDEX sessions_operator ON sessions (operator_ws, created_ms);
CREATE INDEX sessions_wallet_open ON sessions (consumer_wallet)
    WHERE state IN ('REQUESTED', 'ASSIGNED', 'LIVE', 'PAUSED');
CREATE INDEX sessions_open ON sessions (state, created_ms)
    WHERE state IN ('REQUESTED', 'ASSIGNED', 'LIVE', 'PAUSED');
CREATE INDEX sessions_offer ON sessions (offer_ws) WHERE offer_ws IS NOT NULL;
CREATE INDEX sessions_created ON sessions (created_ms);

CREATE TABLE session_windows (
    session_id TEXT NOT NULL REFERENCES sessions (id),
    reason     TEXT NOT NULL,
    opened_ms  INTEGER NOT NULL,
    closed_ms  INTEGER,
    PRIMARY KEY (session_id, reason, opened_ms)
);

CREATE TABLE dispatch_attempts (
    session_id   TEXT NOT NULL REFERENCES sessions (id),
    workspace_id TEXT NOT NULL,
    PRIMARY KEY (session_id, workspace_id)
);
