-- Run ids compared byte by byte (the "C" collation), beside the primary key in the
-- database's own collation. An agents dispatcher's issue runs are `<key>`,
-- `<key>:2`, `<key>:3` ...; the newest of each is read for every candidate issue
-- at every tick as the range `id > '<key>:' AND id < '<key>;'`, which is that
-- issue's runs only byte by byte: under a language's collation (en-US ignores
-- the punctuation at first) 'P-1:3' sorts after 'P-1;' and the range missed it.
CREATE INDEX runs_id_bytes ON runs ((id COLLATE "C"));
