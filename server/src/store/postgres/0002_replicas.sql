-- The replicas sharing this database, by the origin of their
-- http.public_url, and when each last said it was alive (every second):
-- when one dies, the replica its sessions' media move to knows since when
-- they were silent.
CREATE TABLE replicas (
    origin  TEXT COLLATE "C" PRIMARY KEY,
    seen_ms BIGINT NOT NULL
);
