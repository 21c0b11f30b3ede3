-- Runs that park and resume: waitpoints, an inbox for early arrivals, cancellation.

CREATE TABLE waitpoints (
    id          text PRIMARY KEY,
    run_id      text NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    wait_key    text NOT NULL,
    kind        text NOT NULL,
    name        text,
    match       jsonb,
    status      text NOT NULL,
    payload     jsonb,
    inbox_id    bigint,
    due_at      timestamptz,
    created_at  timestamptz NOT NULL,
    resolved_at timestamptz,
    UNIQUE (run_id, wait_key)
);
CREATE INDEX waitpoints_waiting ON waitpoints (kind, name, status);
CREATE INDEX waitpoints_due ON waitpoints (due_at) WHERE status = 'pending';

CREATE TABLE inbox (
    id          bigserial PRIMARY KEY,
    kind        text NOT NULL,
    target      text,
    name        text NOT NULL,
    payload     jsonb,
    created_at  timestamptz NOT NULL,
    expires_at  timestamptz NOT NULL,
    consumed_by text
);
CREATE INDEX inbox_lookup ON inbox (kind, name, target, id);
CREATE INDEX inbox_expiry ON inbox (expires_at);

ALTER TABLE runs ADD COLUMN cancel_requested text;
CREATE INDEX runs_parent ON runs (parent_id);
