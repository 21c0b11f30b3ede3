-- Distributed execution: the job queue, the outbox (events awaiting delivery),
-- and idempotent commands.

ALTER TABLE runs ADD COLUMN queue text;
ALTER TABLE runs ADD COLUMN concurrency_key text;

CREATE TABLE jobs (
    id              bigserial PRIMARY KEY,
    run_id          text NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    queue           text NOT NULL,
    status          text NOT NULL,
    priority        integer NOT NULL DEFAULT 0,
    attempt         integer NOT NULL DEFAULT 0,
    max_attempts    integer NOT NULL DEFAULT 10,
    concurrency_key text,
    worker          text,
    locked_until    timestamptz,
    run_after       timestamptz NOT NULL,
    claimed_at      timestamptz,
    last_error      text,
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL
);
CREATE INDEX jobs_ready ON jobs (queue, priority DESC, id) WHERE status = 'queued';
CREATE INDEX jobs_leases ON jobs (locked_until) WHERE status = 'claimed';
CREATE INDEX jobs_run ON jobs (run_id, status);
CREATE INDEX jobs_claimed_at ON jobs (queue, claimed_at);
-- at most one open job per run, and one claimed job per concurrency key
CREATE UNIQUE INDEX jobs_open_per_run ON jobs (run_id) WHERE status IN ('queued', 'claimed');
CREATE UNIQUE INDEX jobs_claimed_per_key ON jobs (concurrency_key)
    WHERE status = 'claimed' AND concurrency_key IS NOT NULL;

-- every event row is also its outbox entry: delivery state lives beside it
ALTER TABLE events ADD COLUMN published_at timestamptz;
ALTER TABLE events ADD COLUMN attempts integer NOT NULL DEFAULT 0;
ALTER TABLE events ADD COLUMN next_attempt_at timestamptz;
ALTER TABLE events ADD COLUMN dead_at timestamptz;
ALTER TABLE events ADD COLUMN last_error text;
CREATE INDEX events_outbox ON events (at, run_id, seq) WHERE published_at IS NULL AND dead_at IS NULL;
CREATE INDEX events_dead ON events (dead_at) WHERE dead_at IS NOT NULL;
UPDATE events SET published_at = at;

CREATE TABLE idempotency (
    command    text NOT NULL,
    key        text NOT NULL,
    status     text NOT NULL,
    result     jsonb,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    PRIMARY KEY (command, key)
);
