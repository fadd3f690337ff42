-- A device's recent log lines, as its fleet manager last asked for them
-- (the `logs` command): the latest upload per device replaces the one before.
CREATE TABLE device_logs (
    operator_id TEXT COLLATE "C" PRIMARY KEY,
    uploaded_ms BIGINT NOT NULL,
    truncated   BOOLEAN NOT NULL,
    -- A JSON array of strings, oldest first.
    lines       TEXT NOT NULL
);
