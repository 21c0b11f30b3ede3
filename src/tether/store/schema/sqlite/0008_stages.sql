-- The run's attempt: 1, bumped each time `rerun_from` sends it round again.
-- Stage records and artifacts are keyed by it, so a rerun never mixes with
-- what the attempt before it wrote.
ALTER TABLE runs ADD COLUMN attempt INTEGER NOT NULL DEFAULT 1;

-- The database blob store (artifacts and large stage outputs), for deployments
-- whose machines share the database but no disk.
CREATE TABLE blobs (
    key        TEXT PRIMARY KEY,
    body       BLOB NOT NULL,
    size       INTEGER NOT NULL,
    created_at REAL NOT NULL
);
