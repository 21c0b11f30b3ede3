-- How a run names its steps. 1: by name alone (a second call with the same
-- name answered with the first result; runs recorded before this migration);
-- 2: by name and occurrence (`name`, `name#2`, ...; `name[i]` inside for_each
-- item i), or by name and idempotency key (`name@key`).

ALTER TABLE runs ADD COLUMN step_rule INTEGER NOT NULL DEFAULT 1;
