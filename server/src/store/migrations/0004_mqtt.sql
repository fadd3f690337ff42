-- Broker accounts for the fleet link: one per enrolled device (its own
-- topics only) and one per workspace for its fleet manager. Only the
-- Mosquitto password hash is kept; the password is shown once.
CREATE TABLE mqtt_accounts (
    username      TEXT PRIMARY KEY,
    password_hash TEXT NOT NULL,
    workspace_id  TEXT NOT NULL REFERENCES workspaces (id),
    operator_id   TEXT REFERENCES operators (id) ON DELETE CASCADE,
    created_ms    INTEGER NOT NULL
);
CREATE INDEX mqtt_accounts_workspace ON mqtt_accounts (workspace_id);

-- When the broker last said the device was gone (its last will); it is
-- connected again once it is seen after that.
ALTER TABLE operators ADD COLUMN disconnected_ms INTEGER;
