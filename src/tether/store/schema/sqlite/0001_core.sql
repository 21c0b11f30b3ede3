-- tether core schema (SQLite). Times are UTC epoch seconds (REAL); JSON is TEXT.

CREATE TABLE runs (
    id               TEXT PRIMARY KEY,
    workflow_name    TEXT NOT NULL,
    workflow_version TEXT,
    status           TEXT NOT NULL,
    input            TEXT,
    output           TEXT,
    error            TEXT,
    state            TEXT,
    priority         INTEGER NOT NULL DEFAULT 0,
    tags             TEXT NOT NULL DEFAULT '[]',
    tenant           TEXT,
    parent_id        TEXT,
    idempotency_key  TEXT UNIQUE,
    owner            TEXT,
    owner_generation INTEGER NOT NULL DEFAULT 0,
    event_seq        INTEGER NOT NULL DEFAULT 0,
    created_at       REAL NOT NULL,
    updated_at       REAL NOT NULL,
    started_at       REAL,
    finished_at      REAL,
    deadline         REAL,
    compute_seconds  REAL NOT NULL DEFAULT 0
);
CREATE INDEX runs_status_created ON runs (status, created_at);
CREATE INDEX runs_created ON runs (created_at);

CREATE TABLE steps (
    run_id          TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    step_key        TEXT NOT NULL,
    name            TEXT NOT NULL,
    status          TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    idempotency_key TEXT,
    result          TEXT,
    error           TEXT,
    started_at      REAL,
    completed_at    REAL,
    updated_at      REAL NOT NULL,
    PRIMARY KEY (run_id, step_key)
) WITHOUT ROWID;

CREATE TABLE events (
    run_id  TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    seq     INTEGER NOT NULL,
    type    TEXT NOT NULL,
    message TEXT,
    detail  TEXT,
    at      REAL NOT NULL,
    PRIMARY KEY (run_id, seq)
) WITHOUT ROWID;

CREATE TABLE locks (
    scope        TEXT NOT NULL,
    key          TEXT NOT NULL,
    holder       TEXT NOT NULL,
    generation   INTEGER NOT NULL DEFAULT 1,
    run_id       TEXT,
    detail       TEXT,
    acquired_at  REAL NOT NULL,
    heartbeat_at REAL NOT NULL,
    expires_at   REAL NOT NULL,
    released_at  REAL,
    PRIMARY KEY (scope, key)
) WITHOUT ROWID;
CREATE INDEX locks_run ON locks (run_id);

CREATE TABLE heartbeats (
    run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    key    TEXT NOT NULL,
    at     REAL NOT NULL,
    detail TEXT,
    PRIMARY KEY (run_id, key)
) WITHOUT ROWID;
