-- Distributed execution: the job queue, the outbox (events awaiting delivery),
-- and idempotent commands.

ALTER TABLE runs ADD COLUMN queue TEXT;
ALTER TABLE runs ADD COLUMN concurrency_key TEXT;

CREATE TABLE jobs (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id          TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    queue           TEXT NOT NULL,
    status          TEXT NOT NULL,
    priority        INTEGER NOT NULL DEFAULT 0,
    attempt         INTEGER NOT NULL DEFAULT 0,
    max_attempts    INTEGER NOT NULL DEFAULT 10,
    concurrency_key TEXT,
    worker          TEXT,
    locked_until    REAL,
    run_after       REAL NOT NULL,
    claimed_at      REAL,
    last_error      TEXT,
    created_at      REAL NOT NULL,
    updated_at      REAL NOT NULL
);
CREATE INDEX jobs_ready ON jobs (queue, status, priority DESC, id);
CREATE INDEX jobs_leases ON jobs (status, locked_until);
CREATE INDEX jobs_run ON jobs (run_id, status);
-- at most one open job per run, and one claimed job per concurrency key
CREATE UNIQUE INDEX jobs_open_per_run ON jobs (run_id) WHERE status IN ('queued', 'claimed');
CREATE UNIQUE INDEX jobs_claimed_per_key ON jobs (concurrency_key)
    WHERE status = 'claimed' AND concurrency_key IS NOT NULL;

-- every event row is also its outbox entry: delivery state lives beside it
ALTER TABLE events ADD COLUMN published_at REAL;
ALTER TABLE events ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
ALTER TABLE events ADD COLUMN next_attempt_at REAL;
ALTER TABLE events ADD COLUMN dead_at REAL;
ALTER TABLE events ADD COLUMN last_error TEXT;
CREATE INDEX events_outbox ON events (at, run_id, seq) WHERE published_at IS NULL AND dead_at IS NULL;
CREATE INDEX events_dead ON events (dead_at) WHERE dead_at IS NOT NULL;

CREATE TABLE idempotency (
    command    TEXT NOT NULL,
    key        TEXT NOT NULL,
    status     TEXT NOT NULL,
    result     TEXT,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    PRIMARY KEY (command, key)
) WITHOUT ROWID;
UPDATE events SET published_at = at;
