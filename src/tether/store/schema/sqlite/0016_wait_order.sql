-- The order a run's code asked for its waits in. A signal goes to the oldest of a
-- run's waits for its name, and `created_at` alone ties when waits register under
-- one fake-clock instant or in one microsecond (`for_each` items waiting for one
-- signal). `seq` is set by the registering process (NULL for waits of an older
-- tether).

ALTER TABLE waitpoints ADD COLUMN seq INTEGER;
