-- The whole schema of the SQLite store's migrations 0001-0010, for
-- PostgreSQL: the same tables and columns (a test holds the two to it),
-- with PostgreSQL's types. Ids stay text, as the queries of both stores
-- bind them, in byte order (COLLATE "C", as SQLite compares them);
-- instants are Unix milliseconds; money is integer µUSDC.

CREATE TABLE workspaces (
    id                    TEXT COLLATE "C" PRIMARY KEY,
    slug                  TEXT COLLATE "C" NOT NULL UNIQUE,
    name                  TEXT COLLATE "C" NOT NULL,
    wallet                TEXT COLLATE "C" NOT NULL,
    roles                 TEXT COLLATE "C" NOT NULL,
    availability          TEXT COLLATE "C" NOT NULL,
    coverage_lat          DOUBLE PRECISION,
    coverage_lng          DOUBLE PRECISION,
    coverage_radius_m     BIGINT,
    device_kind           TEXT COLLATE "C",
    auto_accept           BOOLEAN NOT NULL,
    offer_timeout_s       BIGINT NOT NULL,
    idle_since_ms         BIGINT NOT NULL,
    created_ms            BIGINT NOT NULL,
    loc_lat               DOUBLE PRECISION,
    loc_lng               DOUBLE PRECISION,
    loc_accuracy_m        DOUBLE PRECISION,
    loc_sequence          BIGINT,
    loc_ms                BIGINT,
    cooling_down_until_ms BIGINT
);
CREATE INDEX workspaces_wallet ON workspaces (wallet);

CREATE TABLE challenges (
    nonce      TEXT COLLATE "C" PRIMARY KEY,
    wallet     TEXT COLLATE "C" NOT NULL,
    purpose    TEXT COLLATE "C" NOT NULL,
    message    TEXT COLLATE "C" NOT NULL,
    expires_ms BIGINT NOT NULL
);

CREATE TABLE api_keys (
    id           TEXT COLLATE "C" PRIMARY KEY,
    workspace_id TEXT COLLATE "C" NOT NULL REFERENCES workspaces (id),
    hash         BYTEA NOT NULL UNIQUE,
    prefix       TEXT COLLATE "C" NOT NULL,
    label        TEXT COLLATE "C" NOT NULL,
    environment  TEXT COLLATE "C" NOT NULL,
    scopes       TEXT COLLATE "C" NOT NULL,
    created_ms   BIGINT NOT NULL,
    revoked_ms   BIGINT
);
CREATE INDEX api_keys_workspace ON api_keys (workspace_id);

CREATE TABLE quotes (
    id           TEXT COLLATE "C" PRIMARY KEY,
    workspace_id TEXT COLLATE "C" NOT NULL REFERENCES workspaces (id),
    lat          DOUBLE PRECISION NOT NULL,
    lng          DOUBLE PRECISION NOT NULL,
    duration_s   BIGINT NOT NULL,
    rate         BIGINT NOT NULL,
    supply_bps   BIGINT NOT NULL,
    demand_bps   BIGINT NOT NULL,
    corridor_bps BIGINT NOT NULL,
    created_ms   BIGINT NOT NULL,
    expires_ms   BIGINT NOT NULL,
    used_ms      BIGINT
);

CREATE TABLE sessions (
    id               TEXT COLLATE "C" PRIMARY KEY,
    state            TEXT COLLATE "C" NOT NULL,
    lat              DOUBLE PRECISION NOT NULL,
    lng              DOUBLE PRECISION NOT NULL,
    geofence_m       BIGINT NOT NULL,
    max_duration_s   BIGINT NOT NULL,
    wait_timeout_s   BIGINT NOT NULL,
    rate             BIGINT NOT NULL,
    consumer_ws      TEXT COLLATE "C" NOT NULL REFERENCES workspaces (id),
    consumer_wallet  TEXT COLLATE "C" NOT NULL,
    operator_ws      TEXT COLLATE "C" REFERENCES workspaces (id),
    quote_id         TEXT COLLATE "C" REFERENCES quotes (id),
    offer_ws         TEXT COLLATE "C",
    offer_expires_ms BIGINT,
    created_ms       BIGINT NOT NULL,
    assigned_ms      BIGINT,
    started_ms       BIGINT,
    ended_ms         BIGINT,
    expiry_reason    TEXT COLLATE "C",
    media_ref        TEXT COLLATE "C",
    whip_url         TEXT COLLATE "C",
    whep_url         TEXT COLLATE "C",
    clean_s          BIGINT,
    failed_s         BIGINT,
    charged          BIGINT,
    fee              BIGINT,
    earned           BIGINT,
    fee_bps          BIGINT,
    operator_id      TEXT COLLATE "C",
    meter_final      BOOLEAN NOT NULL DEFAULT false,
    min_trust_tier   BIGINT NOT NULL DEFAULT 0,
    trust_tier       BIGINT,
    samples_stored   BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX sessions_consumer ON sessions (consumer_ws, created_ms);
CREATE INDEX sessions_operator ON sessions (operator_ws, created_ms);
CREATE INDEX sessions_wallet_open ON sessions (consumer_wallet)
    WHERE state IN ('REQUESTED', 'ASSIGNED', 'LIVE', 'PAUSED');
CREATE INDEX sessions_open ON sessions (state, created_ms)
    WHERE state IN ('REQUESTED', 'ASSIGNED', 'LIVE', 'PAUSED');
CREATE INDEX sessions_offer ON sessions (offer_ws) WHERE offer_ws IS NOT NULL;
CREATE INDEX sessions_created ON sessions (created_ms);
CREATE INDEX sessions_unsettled_meter ON sessions (ended_ms)
    WHERE NOT meter_final AND clean_s IS NOT NULL;
CREATE INDEX sessions_wallet_charged ON sessions (consumer_wallet)
    WHERE state IN ('ENDED', 'EXPIRED') AND charged > 0;

CREATE TABLE session_windows (
    session_id TEXT COLLATE "C" NOT NULL REFERENCES sessions (id),
    reason     TEXT COLLATE "C" NOT NULL,
    opened_ms  BIGINT NOT NULL,
    closed_ms  BIGINT,
    PRIMARY KEY (session_id, reason, opened_ms)
);

CREATE TABLE dispatch_attempts (
    session_id   TEXT COLLATE "C" NOT NULL REFERENCES sessions (id),
    workspace_id TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (session_id, workspace_id)
);

CREATE TABLE enrollment_tokens (
    hash         BYTEA PRIMARY KEY,
    workspace_id TEXT COLLATE "C" NOT NULL REFERENCES workspaces (id),
    created_ms   BIGINT NOT NULL,
    expires_ms   BIGINT NOT NULL,
    used_ms      BIGINT
);

CREATE TABLE operators (
    id                    TEXT COLLATE "C" PRIMARY KEY,
    workspace_id          TEXT COLLATE "C" NOT NULL REFERENCES workspaces (id),
    name                  TEXT COLLATE "C" NOT NULL,
    device_kind           TEXT COLLATE "C" NOT NULL,
    address               TEXT COLLATE "C" NOT NULL UNIQUE,
    public_key            BYTEA NOT NULL,
    token_hash            BYTEA NOT NULL UNIQUE,
    availability          TEXT COLLATE "C" NOT NULL,
    battery_pct           BIGINT,
    last_seen_ms          BIGINT,
    last_sequence         BIGINT,
    fix_lat_e7            BIGINT,
    fix_lng_e7            BIGINT,
    fix_acc_cm            BIGINT,
    fix_ms                BIGINT,
    created_ms            BIGINT NOT NULL,
    disconnected_ms       BIGINT,
    cooling_down_until_ms BIGINT
);
CREATE INDEX operators_workspace ON operators (workspace_id);

CREATE TABLE operator_locks (
    operator_id TEXT COLLATE "C" NOT NULL REFERENCES operators (id) ON DELETE CASCADE,
    subsystem   TEXT COLLATE "C" NOT NULL,
    holder      TEXT COLLATE "C" NOT NULL,
    acquired_ms BIGINT NOT NULL,
    PRIMARY KEY (operator_id, subsystem)
);

CREATE TABLE telemetry (
    operator_id TEXT COLLATE "C" NOT NULL,
    sequence    BIGINT NOT NULL,
    session_id  TEXT COLLATE "C",
    captured_ms BIGINT NOT NULL,
    lat_e7      BIGINT NOT NULL,
    lng_e7      BIGINT NOT NULL,
    accuracy_cm BIGINT NOT NULL,
    source      BIGINT NOT NULL,
    signature   BYTEA NOT NULL,
    received_ms BIGINT NOT NULL,
    PRIMARY KEY (operator_id, sequence)
);
CREATE INDEX telemetry_session ON telemetry (session_id, captured_ms) WHERE session_id IS NOT NULL;

-- One row per ENDED or EXPIRED session whose final meter charged something:
-- what the relayer settles from the consumer's pool on chain.
CREATE TABLE settlements (
    session_id      TEXT COLLATE "C" PRIMARY KEY REFERENCES sessions (id),
    consumer        TEXT COLLATE "C" NOT NULL,
    operator        TEXT COLLATE "C" NOT NULL,
    -- Strictly increasing per consumer: the contract's replay guard.
    sequence        BIGINT NOT NULL,
    rate            BIGINT NOT NULL,
    seconds         BIGINT NOT NULL,
    to_amount       BIGINT NOT NULL,
    fee_amount      BIGINT NOT NULL,
    state           TEXT COLLATE "C" NOT NULL,
    tx_hash         TEXT COLLATE "C",
    nonce           BIGINT,
    block           BIGINT,
    attempts        BIGINT NOT NULL DEFAULT 0,
    last_error      TEXT COLLATE "C",
    next_attempt_ms BIGINT NOT NULL,
    queued_ms       BIGINT NOT NULL,
    updated_ms      BIGINT NOT NULL,
    verify_onchain  BOOLEAN NOT NULL DEFAULT false,
    UNIQUE (consumer, sequence)
);
CREATE INDEX settlements_open ON settlements (consumer, sequence)
    WHERE state IN ('PENDING', 'SUBMITTED', 'UNPAID');

CREATE TABLE mqtt_accounts (
    username      TEXT COLLATE "C" PRIMARY KEY,
    password_hash TEXT COLLATE "C" NOT NULL,
    workspace_id  TEXT COLLATE "C" NOT NULL REFERENCES workspaces (id),
    operator_id   TEXT COLLATE "C" REFERENCES operators (id) ON DELETE CASCADE,
    created_ms    BIGINT NOT NULL
);
CREATE INDEX mqtt_accounts_workspace ON mqtt_accounts (workspace_id);

CREATE TABLE webhooks (
    id              TEXT COLLATE "C" PRIMARY KEY,
    workspace_id    TEXT COLLATE "C" NOT NULL REFERENCES workspaces (id),
    url             TEXT COLLATE "C" NOT NULL,
    events          TEXT COLLATE "C" NOT NULL,
    secret          TEXT COLLATE "C" NOT NULL,
    created_ms      BIGINT NOT NULL,
    failed_in_a_row BIGINT NOT NULL DEFAULT 0,
    disabled_ms     BIGINT
);
CREATE INDEX webhooks_workspace ON webhooks (workspace_id);

CREATE TABLE webhook_events (
    id         TEXT COLLATE "C" PRIMARY KEY,
    type       TEXT COLLATE "C" NOT NULL,
    session_id TEXT COLLATE "C" NOT NULL,
    payload    TEXT COLLATE "C" NOT NULL,
    created_ms BIGINT NOT NULL,
    UNIQUE (session_id, type)
);

CREATE TABLE webhook_deliveries (
    seq             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    webhook_id      TEXT COLLATE "C" NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    event_id        TEXT COLLATE "C" NOT NULL REFERENCES webhook_events (id),
    state           TEXT COLLATE "C" NOT NULL,
    attempts        BIGINT NOT NULL DEFAULT 0,
    last_status     BIGINT,
    last_error      TEXT COLLATE "C",
    next_attempt_ms BIGINT NOT NULL,
    delivered_ms    BIGINT,
    updated_ms      BIGINT NOT NULL,
    UNIQUE (webhook_id, event_id)
);
CREATE INDEX webhook_deliveries_pending ON webhook_deliveries (webhook_id, seq)
    WHERE state = 'PENDING';

CREATE TABLE workspace_locations (
    workspace_id TEXT COLLATE "C" NOT NULL REFERENCES workspaces (id),
    sequence     BIGINT NOT NULL,
    lat          DOUBLE PRECISION NOT NULL,
    lng          DOUBLE PRECISION NOT NULL,
    accuracy_m   DOUBLE PRECISION NOT NULL,
    session_id   TEXT COLLATE "C",
    received_ms  BIGINT NOT NULL,
    PRIMARY KEY (workspace_id, sequence)
);
CREATE INDEX workspace_locations_time ON workspace_locations (workspace_id, received_ms);

CREATE TABLE operator_outages (
    operator_id TEXT COLLATE "C" NOT NULL REFERENCES operators (id) ON DELETE CASCADE,
    opened_ms   BIGINT NOT NULL,
    closed_ms   BIGINT,
    PRIMARY KEY (operator_id, opened_ms)
);

CREATE TABLE revoked_cookies (
    id         TEXT COLLATE "C" PRIMARY KEY,
    expires_ms BIGINT NOT NULL
);
