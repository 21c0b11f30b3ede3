-- Schedules: a workflow started on a cron. The definition lives in code; the
-- row keeps what code cannot: whether an operator paused it, and the time
-- through which its ticks have been started (a tick's run id is derived from
-- the schedule and the tick time, so a tick started twice is one run).

CREATE TABLE schedules (
    name          TEXT PRIMARY KEY,
    workflow_name TEXT NOT NULL,
    cron          TEXT NOT NULL,
    timezone      TEXT NOT NULL,
    queue         TEXT NOT NULL,
    missed        TEXT NOT NULL,
    paused        INTEGER NOT NULL DEFAULT 0,
    fired_until   REAL NOT NULL,
    created_at    REAL NOT NULL,
    updated_at    REAL NOT NULL
);
