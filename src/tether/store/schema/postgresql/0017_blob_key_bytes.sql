-- Blob keys compare byte by byte (the "C" collation), as SQLite's BINARY keys do.
-- Listing or deleting the blobs under a prefix (a run's files, on delete and prune)
-- is then a range of the primary key's index, `key >= prefix AND key < successor`:
-- it tested substr(key, ...) on every row of the table. Under a language's
-- collation a range is not a prefix ('runs/A/x' sorts between 'runs/a/x' and
-- 'runs/a/y' in en-US), and list() now sorts as the file and memory stores do.
-- Only the key's index is rebuilt: the collation of text changes no stored byte.

ALTER TABLE blobs ALTER COLUMN key TYPE text COLLATE "C";
