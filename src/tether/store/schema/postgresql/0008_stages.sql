-- The run's attempt: 1, bumped each time `rerun_from` sends it round again.
-- Stage records and artifacts are keyed by it, so a rerun never mixes with
-- what the attempt before it wrote.
ALTER TABLE runs ADD COLUMN attempt integer NOT NULL DEFAULT 1;

-- The database blob store (artifacts and large stage outputs), for deployments
-- whose machines share the database but no disk.
CREATE TABLE blobs (
    key        text PRIMARY KEY,
    body       bytea NOT NULL,
    size       bigint NOT NULL,
    created_at timestamptz NOT NULL
);
