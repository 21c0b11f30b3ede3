-- Values read back keep the order of their keys. jsonb stores an object's keys
-- sorted (shortest first), so a dict a step returned, a run's input, state or
-- output, a signal's or event's payload came back on replay in another order
-- than the first run saw, and code that iterates over it (naming steps from its
-- keys, say) did something else on replay; SQLite keeps the text as written.
-- json keeps it too, and its numbers as written, so a float of 1e16 or more
-- needs no spelling out. The tags stay jsonb: they are matched with @>.
-- This rewrites the tables named here, under a lock, once.
ALTER TABLE runs
    ALTER COLUMN input TYPE json USING input::json,
    ALTER COLUMN output TYPE json USING output::json,
    ALTER COLUMN error TYPE json USING error::json,
    ALTER COLUMN state TYPE json USING state::json,
    ALTER COLUMN initial_state TYPE json USING initial_state::json;
ALTER TABLE steps
    ALTER COLUMN result TYPE json USING result::json,
    ALTER COLUMN error TYPE json USING error::json;
ALTER TABLE events ALTER COLUMN detail TYPE json USING detail::json;
ALTER TABLE locks ALTER COLUMN detail TYPE json USING detail::json;
ALTER TABLE heartbeats ALTER COLUMN detail TYPE json USING detail::json;
ALTER TABLE waitpoints
    ALTER COLUMN match TYPE json USING match::json,
    ALTER COLUMN payload TYPE json USING payload::json;
ALTER TABLE inbox ALTER COLUMN payload TYPE json USING payload::json;
ALTER TABLE idempotency ALTER COLUMN result TYPE json USING result::json;
