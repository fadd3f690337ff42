-- Telemetry keyed the way it is read: by session, then capture time. A
-- stored sample is one b-tree entry with no second index to keep (the
-- telemetry_session index goes), and ids are their 16 bytes rather than
-- 36 characters of text. A sample of no session (a heartbeat's) has the
-- nil session, 16 zero bytes, as in the signed sample itself.
--
-- (operator_id, sequence) stays unique without an index of its own: a
-- device's sequence only grows, and the ingest refuses a sequence not
-- above the device's last in the same transaction that stores it.
CREATE TABLE telemetry_by_session (
    session_id  BLOB NOT NULL,
    captured_ms INTEGER NOT NULL,
    sequence    INTEGER NOT NULL,
    operator_id BLOB NOT NULL,
    lat_e7      INTEGER NOT NULL,
    lng_e7      INTEGER NOT NULL,
    accuracy_cm INTEGER NOT NULL,
    source      INTEGER NOT NULL,
    signature   BLOB NOT NULL,
    received_ms INTEGER NOT NULL,
    PRIMARY KEY (session_id, captured_ms, sequence, operator_id),
    CHECK (length(session_id) = 16 AND length(operator_id) = 16)
) WITHOUT ROWID;

-- An id that is not a UUID's text fails NOT NULL (not hex: unhex gives
-- NULL) or the length check (hex of another length): the migration stops
-- and nothing is lost, rather than storing a sample under a wrong key.
INSERT INTO telemetry_by_session
    (session_id, captured_ms, sequence, operator_id, lat_e7, lng_e7, accuracy_cm, source, signature, received_ms)
SELECT
    CASE WHEN session_id IS NULL THEN zeroblob(16) ELSE unhex(session_id, '-') END,
    captured_ms, sequence, unhex(operator_id, '-'),
    lat_e7, lng_e7, accuracy_cm, source, signature, received_ms
FROM telemetry;

DROP TABLE telemetry;
ALTER TABLE telemetry_by_session RENAME TO telemetry;
