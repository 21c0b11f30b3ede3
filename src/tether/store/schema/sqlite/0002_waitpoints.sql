-- Runs that park and resume: waitpoints, an inbox for early arrivals, cancellation.

CREATE TABLE waitpoints (
    id          TEXT PRIMARY KEY,
    run_id      TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    wait_key    TEXT NOT NULL,
    kind        TEXT NOT NULL,
    name        TEXT,
    match       TEXT,
    status      TEXT NOT NULL,
    payload     TEXT,
    inbox_id    INTEGER,
    due_at      REAL,
    created_at  REAL NOT NULL,
    resolved_at REAL,
    UNIQUE (run_id, wait_key)
);
CREATE INDEX waitpoints_waiting ON waitpoints (kind, name, status);
CREATE INDEX waitpoints_due ON waitpoints (status, due_at);

CREATE TABLE inbox (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    kind        TEXT NOT NULL,
    target      TEXT,
    name        TEXT NOT NULL,
    payload     TEXT,
    created_at  REAL NOT NULL,
    expires_at  REAL NOT NULL,
    consumed_by TEXT
);
CREATE INDEX inbox_lookup ON inbox (kind, name, target, id);
CREATE INDEX inbox_expiry ON inbox (expires_at);

ALTER TABLE runs ADD COLUMN cancel_requested TEXT;
CREATE INDEX runs_parent ON runs (parent_id);
