-- How many samples a session holds, kept with every ingest, so that its cap
-- is checked without counting them again on every batch.
ALTER TABLE sessions ADD COLUMN samples_stored INTEGER NOT NULL DEFAULT 0;
UPDATE sessions SET samples_stored =
    (SELECT COUNT(*) FROM telemetry t WHERE t.session_id = sessions.id);
