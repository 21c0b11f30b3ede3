-- A blob's body moves to its row's last column, where SQLite keeps a zeroblob(N)
-- as a count rather than N zero bytes: a put now makes the row with room for the
-- body and writes the body into it in place (blobopen). With the body before other
-- columns, SQLite built the whole row in memory first, and a put of N bytes grew
-- the process by about 2 N. The rows are copied once, one at a time.
CREATE TABLE blobs_new (
    key        TEXT PRIMARY KEY,
    size       INTEGER NOT NULL,
    created_at REAL NOT NULL,
    body       BLOB NOT NULL
);
INSERT INTO blobs_new (key, size, created_at, body)
    SELECT key, size, created_at, body FROM blobs;
DROP TABLE blobs;
ALTER TABLE blobs_new RENAME TO blobs;
