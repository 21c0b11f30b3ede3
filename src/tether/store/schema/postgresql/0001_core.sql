-- tether core schema (PostgreSQL). Lives in the schema named by the URL
-- (default "tether"); the adapter sets search_path before applying it.
--
-- steps, events and heartbeats carry no foreign key to runs: every write to
-- them happens in a statement whose fencing CTE has just updated the run's
-- row, so the run exists; a foreign-key trigger would re-check (and lock) that
-- row again on the hottest path (measured: ~0.3 ms of a ~1 ms step).

CREATE TABLE runs (
    id               text PRIMARY KEY,
    workflow_name    text NOT NULL,
    workflow_version text,
    status           text NOT NULL,
    input            jsonb,
    output           jsonb,
    error            jsonb,
    state            jsonb,
    priority         integer NOT NULL DEFAULT 0,
    tags             jsonb NOT NULL DEFAULT '[]',
    tenant           text,
    parent_id        text,
    idempotency_key  text UNIQUE,
    owner            text,
    owner_generation bigint NOT NULL DEFAULT 0,
    event_seq        bigint NOT NULL DEFAULT 0,
    created_at       timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL,
    started_at       timestamptz,
    finished_at      timestamptz,
    deadline         timestamptz,
    compute_seconds  double precision NOT NULL DEFAULT 0
);
CREATE INDEX runs_status_created ON runs (status, created_at);
CREATE INDEX runs_created ON runs (created_at);

CREATE TABLE steps (
    run_id          text NOT NULL,
    step_key        text NOT NULL,
    name            text NOT NULL,
    status          text NOT NULL,
    attempts        integer NOT NULL DEFAULT 0,
    idempotency_key text,
    result          jsonb,
    error           jsonb,
    started_at      timestamptz,
    completed_at    timestamptz,
    updated_at      timestamptz NOT NULL,
    PRIMARY KEY (run_id, step_key)
);

CREATE TABLE events (
    run_id  text NOT NULL,
    seq     bigint NOT NULL,
    type    text NOT NULL,
    message text,
    detail  jsonb,
    at      timestamptz NOT NULL,
    PRIMARY KEY (run_id, seq)
);

CREATE TABLE locks (
    scope        text NOT NULL,
    key          text NOT NULL,
    holder       text NOT NULL,
    generation   bigint NOT NULL DEFAULT 1,
    run_id       text,
    detail       jsonb,
    acquired_at  timestamptz NOT NULL,
    heartbeat_at timestamptz NOT NULL,
    expires_at   timestamptz NOT NULL,
    released_at  timestamptz,
    PRIMARY KEY (scope, key)
);
CREATE INDEX locks_run ON locks (run_id);

CREATE TABLE heartbeats (
    run_id text NOT NULL,
    key    text NOT NULL,
    at     timestamptz NOT NULL,
    detail jsonb,
    PRIMARY KEY (run_id, key)
);
