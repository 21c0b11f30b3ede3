-- Schedules: a workflow started on a cron. The definition lives in code; the
-- row keeps what code cannot: whether an operator paused it, and the time
-- through which its ticks have been started (a tick's run id is derived from
-- the schedule and the tick time, so a tick started twice is one run).

CREATE TABLE schedules (
    name          text PRIMARY KEY,
    workflow_name text NOT NULL,
    cron          text NOT NULL,
    timezone      text NOT NULL,
    queue         text NOT NULL,
    missed        text NOT NULL,
    paused        boolean NOT NULL DEFAULT false,
    fired_until   timestamptz NOT NULL,
    created_at    timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL
);
