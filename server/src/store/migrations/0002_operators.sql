CREATE TABLE enrollment_tokens (
    hash         BLOB PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces (id),
    created_ms   INTEGER NOT NULL,
    expires_ms   INTEGER NOT NULL,
    used_ms      INTEGER
);

CREATE TABLE operators (
    id             TEXT PRIMARY KEY,
    workspace_id   TEXT NOT NULL REFERENCES workspaces (id),
    name           TEXT NOT NULL,
    device_kind    TEXT NOT NULL,
    address        TEXT NOT NULL UNIQUE,
    public_key     BLOB NOT NULL,
    token_hash     BLOB NOT NULL UNIQUE,
    availability   TEXT NOT NULL,
    battery_pct    INTEGER,
    last_seen_ms   INTEGER,
    last_sequence  INTEGER,
    fix_lat_e7     INTEGER,
    fix_lng_e7     INTEGER,
    fix_acc_cm     INTEGER,
    fix_ms         INTEGER,
    created_ms     INTEGER NOT NULL
);
CREATE INDEX operators_workspace ON operators (workspace_id);

CREATE TABLE operator_locks (
    operator_id TEXT NOT NULL REFERENCES operators (id) ON DELETE CASCADE,
    subsystem   TEXT NOT NULL,
    holder      TEXT NOT NULL,
    acquired_ms INTEGER NOT NULL,
    PRIMARY KEY (operator_id, subsystem)
);

CREATE TABLE telemetry (
    operator_id TEXT NOT NULL,
    sequence    INTEGER NOT NULL,
    session_id  TEXT,
    captured_ms INTEGER NOT NULL,
    lat_e7      INTEGER NOT NULL,
    lng_e7      INTEGER NOT NULL,
    accuracy_cm INTEGER NOT NULL,
    source      INTEGER NOT NULL,
    signature   BLOB NOT NULL,
    received_ms INTEGER NOT NULL,
    PRIMARY KEY (operator_id, sequence)
);
CREATE INDEX telemetry_session ON telemetry (session_id, captured_ms) WHERE session_id IS NOT NULL;

ALTER TABLE sessions ADD COLUMN operator_id TEXT;
ALTER TABLE sessions ADD COLUMN meter_final INTEGER NOT NULL DEFAULT 0;
CREATE INDEX sessions_unsettled_meter ON sessions (ended_ms) WHERE meter_final = 0 AND clean_s IS NOT NULL;

ALTER TABLE workspaces ADD COLUMN loc_lat REAL;
ALTER TABLE workspaces ADD COLUMN loc_lng REAL;
ALTER TABLE workspaces ADD COLUMN loc_accuracy_m REAL;
ALTER TABLE workspaces ADD COLUMN loc_sequence INTEGER;
ALTER TABLE workspaces ADD COLUMN loc_ms INTEGER;
