-- Trust tiers (DESIGN.md 4.13). A session keeps the lowest tier its consumer
-- accepts, and the tier of the supplier it was assigned to (0: a workspace
-- without devices, 1: an enrolled device).
ALTER TABLE sessions ADD COLUMN min_trust_tier INTEGER NOT NULL DEFAULT 0;
ALTER TABLE sessions ADD COLUMN trust_tier INTEGER;

-- A supplier assigned a session that did not go LIVE in time is skipped by
-- dispatch until then.
ALTER TABLE workspaces ADD COLUMN cooling_down_until_ms INTEGER;
ALTER TABLE operators ADD COLUMN cooling_down_until_ms INTEGER;

-- Every unsigned location heartbeat of a workspace, stamped when received:
-- the meter's evidence for the sessions the workspace serves without a
-- device, found by the workspace and the session's time window.
CREATE TABLE workspace_locations (
    workspace_id TEXT NOT NULL REFERENCES workspaces (id),
    sequence     INTEGER NOT NULL,
    lat          REAL NOT NULL,
    lng          REAL NOT NULL,
    accuracy_m   REAL NOT NULL,
    -- The session the publisher named, if any (informative only).
    session_id   TEXT,
    received_ms  INTEGER NOT NULL,
    PRIMARY KEY (workspace_id, sequence)
);
CREATE INDEX workspace_locations_time ON workspace_locations (workspace_id, received_ms);

-- When a device was out of reach: from its last contact until its next one,
-- recorded when the broker announces it gone (open until it is heard from
-- again) or when it is heard from after a silence longer than the late
-- sample bound. A sample received late counts only inside one of these.
CREATE TABLE operator_outages (
    operator_id TEXT NOT NULL REFERENCES operators (id) ON DELETE CASCADE,
    opened_ms   INTEGER NOT NULL,
    closed_ms   INTEGER,
    PRIMARY KEY (operator_id, opened_ms)
);
