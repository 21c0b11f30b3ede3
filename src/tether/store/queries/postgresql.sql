-- Named queries of the PostgreSQL store (see _sql.py). Times are timestamptz;
-- {_now} is the time judging expiry: the engine's :now when pinned, else the
-- server's clock. Lists are arrays. Rows that a verb decides on are locked
-- (FOR UPDATE) where SQLite's BEGIN IMMEDIATE already serialises writers.

-- name: _run_cols
id, workflow_name, workflow_version, status, input::text, output::text, error::text,
state::text, priority, tags::text, tenant, parent_id, idempotency_key, owner, owner_generation,
created_at, updated_at, started_at, finished_at, compute_seconds, cancel_requested, queue,
owner_expires_at, step_rule, budget, attempt, end_reason, initial_state::text
-- name: _step_cols
run_id, step_key, name, status, attempts, idempotency_key, result::text, error::text,
started_at, completed_at, updated_at, seq
-- name: _lock_cols
scope, key, holder, generation, run_id, detail::text, acquired_at, heartbeat_at, expires_at,
released_at
-- name: _wait_cols
id, run_id, wait_key, kind, name, match::text, status, payload::text, due_at, created_at,
resolved_at
-- name: _in_ids
-- `x {_in_ids}`: x is one of the array :ids
= ANY(:ids)
-- name: runs_lock
-- in one order (the ids'), as every verb that locks several runs at once
SELECT id FROM runs WHERE id {_in_ids} ORDER BY id FOR UPDATE
-- name: _wait_order
-- the order the code asked for its waits in (`seq` is NULL for waits of an older tether)
created_at, seq, wait_key
-- name: _job_cols
jobs.id, jobs.run_id, jobs.queue, jobs.status, jobs.priority, jobs.attempt, jobs.max_attempts,
jobs.concurrency_key, jobs.worker, jobs.locked_until, jobs.run_after, jobs.last_error
-- name: _now
COALESCE(:now::timestamptz, clock_timestamp())
-- name: _claimable
(:force OR status NOT IN ('running', 'cancelled') OR owner IS NULL OR owner = :owner
 OR owner_expires_at IS NULL OR owner_expires_at <= {_now}
 OR owner IS NOT DISTINCT FROM :dead::text)
-- name: _orphan
((status = 'running' AND (owner_expires_at <= {_now} OR (owner_expires_at IS NULL
  AND updated_at <= {_now} - make_interval(secs => :grace)))) OR (status = 'pending'
  AND updated_at <= {_now} - make_interval(secs => :grace))
 OR (status = 'cancelled' AND cancel_requested = 'compensate' AND (owner_expires_at <= {_now}
  OR (owner_expires_at IS NULL AND updated_at <= {_now} - make_interval(secs => :grace)))))
-- name: _fence
id = :wid AND (:gen::bigint IS NULL OR (owner_generation = :gen AND (:comp OR status NOT IN {CLOSED})))
-- name: _event_cte
-- the fence and the event number, then the event: the head of a one-statement verb
WITH r AS (UPDATE runs SET event_seq = event_seq + 1, updated_at = :at WHERE {_fence}
  RETURNING event_seq),
{_event_r},
-- name: _event_r
-- the event numbered by CTE r, the runs row's update (a verb that changes the run itself
-- changes it in r: PostgreSQL applies one update per row per statement)
e AS (INSERT INTO events (run_id, seq, type, message, detail, at)
  SELECT :wid, r.event_seq, :etype, :emsg, :edetail::json, :at FROM r)
-- name: _sync_off
q AS (SELECT set_config('synchronous_commit', 'off', true) AS s)
-- name: _sync_on
q AS (SELECT 1 AS s)

-- name: bump
UPDATE runs SET event_seq = event_seq + :n, updated_at = :at WHERE {_fence} RETURNING event_seq
-- name: insert_event
INSERT INTO events (run_id, seq, type, message, detail, at)
VALUES (:wid, :seq, :type, :message, :detail::json, :at)
-- name: run_status_locked
SELECT status, end_reason FROM runs WHERE id = :wid FOR UPDATE
-- name: run_ended_locked
-- the run's status, and whether it ended before :before (NULL when :before is)
SELECT status, finished_at < :before FROM runs WHERE id = :wid FOR UPDATE
-- name: notify
SELECT pg_notify(:chan, :what)

-- name: insert_run
INSERT INTO runs (id, workflow_name, workflow_version, status, input, state, priority, tags,
  tenant, parent_id, idempotency_key, queue, concurrency_key, created_at, updated_at, step_rule,
  budget, initial_state)
VALUES (:workflow_id, :workflow_name, :workflow_version, 'pending', :input::json, :state::json,
  :priority, :tags::jsonb, :tenant, :parent_id, :idempotency_key, :queue, :ckey, :at, :at,
  :step_rule, :budget, :state::json)
ON CONFLICT DO NOTHING
-- name: list_runs
SELECT {_run_cols} FROM runs WHERE (:status::text IS NULL OR status = :status)
ORDER BY created_at DESC, id LIMIT :limit
-- name: _claim_set
owner = :owner, owner_generation = owner_generation + 1,
  owner_expires_at = {_now} + make_interval(secs => :lease::float8), status = 'running',
  started_at = COALESCE(started_at, :at), finished_at = NULL, end_reason = NULL,
  updated_at = :at
-- name: _run_unlocked
-- a job's claim never waits for its run: a cancel locks the run, then its queued job
id IN (SELECT id FROM runs WHERE id = :wid FOR UPDATE SKIP LOCKED)
-- name: _drives
EXISTS (SELECT 1 FROM unnest(:names::text[], :versions::text[]) d(n, v)
  WHERE d.n = workflow_name AND d.v IS NOT DISTINCT FROM workflow_version)
-- name: _claim_where
-- a run that ended is never claimed (a driver that read it live a moment ago is refused)
id = :wid AND status NOT IN {TERMINAL} AND {_claimable}
-- name: _claim_set_compensating
owner = :owner, owner_generation = owner_generation + 1,
  owner_expires_at = {_now} + make_interval(secs => :lease::float8), updated_at = :at
-- name: _claim_where_compensating
id = :wid AND status = 'cancelled' AND cancel_requested = 'compensate' AND {_claimable}
-- name: _claim_event
-- the claim's event, numbered by the claim (CTE c) itself: the fence a separate bump would
-- check right after the claim (this owner's generation, a status not closed) holds
e AS (INSERT INTO events (run_id, seq, type, message, detail, at)
  SELECT id, event_seq, :etype, :emsg, :edetail::json, :at FROM c)
SELECT {_run_cols} FROM c
-- name: claim_run
-- one statement: the claim and its event
WITH c AS (UPDATE runs SET {_claim_set}, event_seq = event_seq + 1 WHERE {_claim_where}
  RETURNING {_run_cols}, event_seq), {_claim_event}
-- name: claim_run_compensating
WITH c AS (UPDATE runs SET {_claim_set_compensating}, event_seq = event_seq + 1
  WHERE {_claim_where_compensating} RETURNING {_run_cols}, event_seq), {_claim_event}
-- name: renew_owner
UPDATE runs SET owner_expires_at = {_now} + make_interval(secs => :lease)
WHERE owner = :owner AND id = ANY(:ids) AND (status = 'running' OR (status = 'cancelled'
  AND cancel_requested = 'compensate')) RETURNING id, status
-- name: release_run_check
SELECT status FROM runs WHERE id = :wid AND owner_generation = :gen FOR UPDATE
-- name: release_run_one
-- one statement: release_run_check, the event, release_run and the notification
WITH r AS (UPDATE runs SET status = 'pending', owner_expires_at = NULL,
  event_seq = event_seq + 1, updated_at = :at
  WHERE id = :wid AND owner_generation = :gen AND status = 'running' RETURNING event_seq),
{_event_r},
n AS (SELECT pg_notify(:chan, :note) FROM r)
SELECT (SELECT count(*) FROM n) FROM r
-- name: _finish_set
status = :status, output = :output::json, error = COALESCE(:error::json, error),
  finished_at = :at, compute_seconds = compute_seconds + :cs, cancel_requested = NULL,
  end_reason = :reason::text
-- name: finish_run
UPDATE runs SET {_finish_set} WHERE id = :wid
-- name: _finish_where
-- the fence, unless the end resolves a wait on this run (the shared transaction wakes it)
{_fence} AND NOT (:ended AND EXISTS (SELECT 1 FROM waitpoints
  WHERE kind = 'run' AND name = :wid AND status = 'pending'))
-- name: _finish_notify
-- the run's claimed job ends with it (:closejob: the run ended by its own function), so
-- the worker's finish_job has nothing left to write; its waits still pending (a for_each
-- sibling's, a task's never awaited) are closed with it (waits_cancel); then the notification
j AS (UPDATE jobs SET {_job_done_with_run} FROM r WHERE jobs.run_id = :wid
  AND jobs.status = 'claimed' AND :closejob RETURNING jobs.id),
w AS (UPDATE waitpoints SET status = 'cancelled', resolved_at = :at FROM r
  WHERE waitpoints.run_id = :wid AND waitpoints.status = 'pending' AND :ended),
n AS (SELECT pg_notify(:chan, :note) FROM r)
SELECT (SELECT count(*) FROM n), (SELECT min(id) FROM j) FROM r
-- name: finish_run_one
-- one statement: the fence, the event, the end and the notification; no row (and the shared
-- transaction instead) when the fence fails or the end resolves a wait on this run
WITH r AS (UPDATE runs SET {_finish_set}, event_seq = event_seq + 1, updated_at = :at
  WHERE {_finish_where} RETURNING event_seq),
{_event_r},
{_finish_notify}
-- name: complete_and_finish_run
-- finish_run_one carrying the last step's held completion (see _held_completion)
WITH r AS (UPDATE runs SET {_finish_set}, event_seq = event_seq + 2, updated_at = :at
  WHERE {_finish_where} RETURNING event_seq),
{_held_completion},
{_finish_notify}
-- name: set_state
WITH r AS (UPDATE runs SET state = :state::json, event_seq = event_seq + 1, updated_at = :at
  WHERE {_fence} RETURNING event_seq),
{_event_r}
SELECT 1 FROM r
-- name: mark_failing
WITH r AS (UPDATE runs SET error = :error::json, end_reason = :reason,
  event_seq = event_seq + 1, updated_at = :at WHERE {_fence} AND status = 'running'
  RETURNING event_seq),
{_event_r}
SELECT 1 FROM r
-- name: last_event
SELECT run_id, seq, type, message, detail::text, at FROM events
WHERE run_id = :wid AND type = :type ORDER BY seq DESC LIMIT 1
-- name: list_events
SELECT run_id, seq, type, message, detail::text, at FROM events
WHERE run_id = :wid AND seq > :after ORDER BY seq LIMIT :limit
-- name: latest_events
-- the newest event of each run :wids, one probe of the primary key each
SELECT e.run_id, e.seq, e.type, e.message, e.detail::text, e.at FROM unnest(:wids::text[]) w(id)
CROSS JOIN LATERAL (SELECT * FROM events WHERE run_id = w.id ORDER BY seq DESC LIMIT 1) e

-- name: newest_generations
-- the newest run of each :bases, whose runs are `<base>` and `<base>:<n>`: that name's
-- runs only, the longest id and then the highest winning (`:10` after `:9`). The range
-- is byte by byte, on the ids' "C" index (0020): in the database's own collation (en-US
-- ignores punctuation at first) 'P-1:3' sorts after 'P-1;' and fell outside it
SELECT n.base, {_run_cols} FROM unnest(:bases::text[]) n(base) CROSS JOIN LATERAL (
  SELECT * FROM runs WHERE id = n.base OR ((id COLLATE "C") > (n.base || ':') COLLATE "C"
    AND (id COLLATE "C") < (n.base || ';') COLLATE "C"
    AND substr(id, length(n.base) + 2) ~ '^[0-9]+$')
  ORDER BY length(id) DESC, (id COLLATE "C") DESC LIMIT 1) r

-- name: _held_completion
-- a held step completion (:ckey) that rides on a statement whose CTE r reserved two event
-- numbers: the completion's event first, then the statement's own
e AS (INSERT INTO events (run_id, seq, type, message, detail, at)
  SELECT :wid, r.event_seq - 1, :ctype, :cmsg, :cdetail::json, :cat FROM r
  UNION ALL SELECT :wid, r.event_seq, :etype, :emsg, :edetail::json, :at FROM r),
c AS (UPDATE steps SET status = 'completed', result = :result::json, error = NULL,
  completed_at = :cat, updated_at = :cat FROM r WHERE run_id = :wid AND step_key = :ckey)

-- name: _start_marker
-- the start marker, after CTE r (the fence and event number) and q (the commit mode)
INSERT INTO steps AS s (run_id, step_key, name, status, attempts, idempotency_key, started_at,
  updated_at) SELECT :wid, :key, :key, 'running', 1, :ikey, :at, :at FROM r, q
ON CONFLICT (run_id, step_key) DO UPDATE SET status = 'running',
  attempts = CASE WHEN s.idempotency_key IS NOT DISTINCT FROM excluded.idempotency_key
    THEN s.attempts + 1 ELSE 1 END,
  result = CASE WHEN s.idempotency_key IS NOT DISTINCT FROM excluded.idempotency_key
    THEN s.result ELSE NULL END,
  idempotency_key = excluded.idempotency_key, completed_at = NULL,
  started_at = excluded.started_at, updated_at = excluded.updated_at
RETURNING s.attempts, s.result::text, s.error::text

-- name: start_step
-- one statement: fence, event, start marker; the marker does not wait for the WAL flush
{_event_cte} {_sync_off}
{_start_marker}
-- name: complete_and_start_step
-- a held completion and the next start marker of the same run (another step): one
-- statement, one durable commit; the fence, two events, the completion, the marker
WITH r AS (UPDATE runs SET event_seq = event_seq + 2, updated_at = :at WHERE {_fence}
  RETURNING event_seq),
{_held_completion},
{_sync_on}
{_start_marker}
-- name: complete_step
{_event_cte} {_sync_on}
UPDATE steps SET status = 'completed', result = :result::json, error = NULL,
  completed_at = :at, updated_at = :at FROM r, q WHERE run_id = :wid AND step_key = :key
RETURNING 1
-- name: complete_step_fast
{_event_cte} {_sync_off}
UPDATE steps SET status = 'completed', result = :result::json, error = NULL,
  completed_at = :at, updated_at = :at FROM r, q WHERE run_id = :wid AND step_key = :key
RETURNING 1
-- name: fail_step
{_event_cte} {_sync_on}
UPDATE steps SET status = 'failed', error = :error::json, updated_at = :at FROM r, q
WHERE run_id = :wid AND step_key = :key RETURNING 1
-- name: fail_step_fast
{_event_cte} {_sync_off}
UPDATE steps SET status = 'failed', error = :error::json, updated_at = :at FROM r, q
WHERE run_id = :wid AND step_key = :key RETURNING 1
-- name: record_heartbeat
{_event_cte} {_sync_off}
INSERT INTO heartbeats (run_id, key, at, detail) SELECT :wid, :key, :at, :detail::json FROM r, q
ON CONFLICT (run_id, key) DO UPDATE SET at = excluded.at, detail = excluded.detail RETURNING 1
-- name: save_value
INSERT INTO steps (run_id, step_key, name, status, attempts, result, started_at, completed_at,
  updated_at, seq) VALUES (:wid, :key, :key, 'completed', 1, :value::json, :at, :at, :at, :seq)
ON CONFLICT (run_id, step_key) DO NOTHING
-- name: write_state
UPDATE runs SET state = :state::json, updated_at = :at WHERE id = :wid
-- name: list_heartbeats
SELECT run_id, key, at, detail::text FROM heartbeats WHERE run_id = :wid ORDER BY key

-- name: lock_current
-- the lock, the time, and its run's status and attempt (a lock kept by a parked run)
SELECT {_lock_cols}, {_now}, (SELECT status FROM runs WHERE id = locks.run_id),
  (SELECT attempt FROM runs WHERE id = locks.run_id)
FROM locks WHERE scope = :scope AND key = :key FOR UPDATE
-- name: lock_insert
INSERT INTO locks (scope, key, holder, generation, run_id, detail, acquired_at, heartbeat_at,
  expires_at) SELECT :scope, :key, :holder, 1, :run, :detail::json, t.n, t.n,
  t.n + make_interval(secs => :ttl) FROM (SELECT {_now} AS n) t
ON CONFLICT DO NOTHING RETURNING {_lock_cols}
-- name: lock_take
UPDATE locks SET holder = :holder, generation = generation + 1, run_id = :run,
  detail = :detail::json, acquired_at = :t, heartbeat_at = :t,
  expires_at = :t + make_interval(secs => :ttl), released_at = NULL
WHERE scope = :scope AND key = :key RETURNING {_lock_cols}
-- name: lock_extend
UPDATE locks SET heartbeat_at = :t, expires_at = :t + make_interval(secs => :ttl),
  detail = COALESCE(:detail::json, detail)
WHERE scope = :scope AND key = :key RETURNING {_lock_cols}
-- name: renew_lock
-- the holder's own claim, even if it lapsed: nobody took it meanwhile (a taker is
-- the holder now), so a renewal late by a stall is no reason to let a live holder go
WITH t AS (SELECT {_now} AS n) UPDATE locks SET heartbeat_at = t.n,
  expires_at = t.n + make_interval(secs => :ttl) FROM t
WHERE scope = :scope AND key = :key AND holder = :holder AND released_at IS NULL
RETURNING {_lock_cols}
-- name: list_locks
SELECT {_lock_cols} FROM locks WHERE scope = :scope AND generation > 0
  AND (:run::text IS NULL OR run_id = :run) ORDER BY key
-- name: forget_silent_locks
-- a lock no longer held whose holder went silent, unless a run took it (a mutex kept by
-- its parked run) or its holder still owns a running run under a live claim
WITH t AS (SELECT {_now} AS n) DELETE FROM locks USING t WHERE scope = :scope
  AND run_id IS NULL AND (released_at IS NOT NULL OR expires_at <= t.n)
  AND COALESCE(released_at, heartbeat_at) < t.n - make_interval(secs => :silent)
  AND NOT EXISTS (SELECT 1 FROM runs WHERE runs.owner = locks.holder
    AND runs.status = 'running' AND runs.owner_expires_at > t.n)

-- name: wait_insert
INSERT INTO waitpoints (id, run_id, wait_key, kind, name, match, status, due_at, created_at,
  seq)
VALUES (:id, :wid, :key, :kind, :name, :match::json, 'pending', :due, :at, :seq)
RETURNING {_wait_cols}
-- name: wait_resolve
UPDATE waitpoints SET status = 'resolved', payload = :payload::json, inbox_id = :inbox,
  resolved_at = :at WHERE id = :id RETURNING {_wait_cols}
-- name: inbox_signal
SELECT id, payload::text FROM inbox WHERE kind = 'signal' AND name = :name AND target = :wid
  AND consumed_by IS NULL AND expires_at > :at ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED
-- name: inbox_events_for
-- events sent since the run began that none of its waits took, nor one a rerun
-- forgot (`rerun_events_taken`)
SELECT i.id, i.payload::text FROM inbox i, runs r WHERE r.id = :wid AND i.kind = 'event'
  AND i.name = :name AND i.created_at >= r.created_at AND i.expires_at > :at
  AND i.id NOT IN (SELECT inbox_id FROM waitpoints WHERE run_id = :wid AND inbox_id IS NOT NULL)
  AND i.id NOT IN (SELECT CAST(t.consumed_by AS bigint) FROM inbox t
    WHERE t.kind = 'event_taken' AND t.name = :name AND t.target = :wid)
ORDER BY i.id
-- name: child_outcome
SELECT status, output::text, error::text FROM runs WHERE id = :id
-- name: waits_resolved
SELECT 1 FROM waitpoints WHERE run_id = :wid AND wait_key = ANY(:keys) AND status != 'pending'
LIMIT 1
-- name: inbox_add_event
INSERT INTO inbox (kind, name, payload, created_at, expires_at)
VALUES ('event', :name, :payload::json, :at, :expires) RETURNING id
-- name: waits_for_event
-- (a wait whose timeout has passed is left to `fire_due`, as for a signal)
SELECT id, run_id, wait_key, match::text FROM waitpoints WHERE kind = 'event' AND name = :name
  AND status = 'pending' AND (due_at IS NULL OR due_at > :at) ORDER BY {_wait_order} FOR UPDATE
-- name: inbox_add_signal
INSERT INTO inbox (kind, target, name, payload, created_at, expires_at)
VALUES ('signal', :wid, :name, :payload::json, :at, :expires)
-- name: token_get
SELECT run_id, wait_key, status FROM waitpoints WHERE id = :id AND kind = 'token'
-- name: waits_on_ended_children
SELECT w.name, c.status, c.output::text, c.error::text FROM waitpoints w
JOIN runs c ON c.id = w.name WHERE w.kind = 'run' AND w.status = 'pending'
  AND c.status IN {TERMINAL}
-- name: cancel_tree_lock
-- the runs a cancel reaches (the children it waits on, theirs, ...), locked deepest first
-- and before the run itself: a child that ends holds its own row and then locks its
-- waiting parent's, and a cancel that held the parent while it waited for the child
-- deadlocked with it (PostgreSQL undid one of them after a second)
WITH RECURSIVE t(id, depth) AS (SELECT CAST(:wid AS text), 0
  UNION SELECT w.name, t.depth + 1 FROM waitpoints w JOIN t ON w.run_id = t.id
  WHERE w.kind = 'run' AND w.status = 'pending' AND t.depth < 100)
SELECT r.id FROM runs r JOIN (SELECT id, max(depth) AS depth FROM t GROUP BY id) d
  ON d.id = r.id WHERE d.depth > 0 ORDER BY d.depth DESC, r.id FOR UPDATE OF r
-- name: cancel_one
UPDATE runs SET status = 'cancelled', error = :error::json, finished_at = :at,
  cancel_requested = :mode, end_reason = :reason
WHERE id = :id AND status NOT IN {TERMINAL} AND end_reason IS NULL RETURNING id, queue
-- name: child_waits_resolve
-- the waiting parents' rows are locked before their waits (the order of every verb that
-- writes a run's waits: else a timer of the parent's firing meanwhile deadlocks with it)
WITH p AS (SELECT id FROM runs WHERE id IN (SELECT run_id FROM waitpoints WHERE kind = 'run'
  AND name = :child AND status = 'pending') ORDER BY id FOR UPDATE)
UPDATE waitpoints SET status = 'resolved', payload = :payload::json, resolved_at = :at
WHERE kind = 'run' AND name = :child AND status = 'pending' AND run_id IN (SELECT id FROM p)
RETURNING run_id, wait_key
-- name: submit_run
-- one statement: the run, its first job, its first event and the wake-up call
WITH r AS (INSERT INTO runs (id, workflow_name, workflow_version, status, input, state,
  priority, tags, tenant, parent_id, idempotency_key, queue, concurrency_key, event_seq,
  created_at, updated_at, step_rule, budget, initial_state) VALUES (:id, :name, :version,
  'pending', :input::json, :state::json, :rpriority, :tags::jsonb, :tenant, :parent, :ikey,
  :queue, :ckey, 1, :at, :at, :rule, :budget, :state::json) ON CONFLICT DO NOTHING
  RETURNING {_run_cols}),
j AS (INSERT INTO jobs (run_id, queue, status, priority, max_attempts, concurrency_key,
  run_after, created_at, updated_at, workflow_name, workflow_version) SELECT id, :queue,
  'queued', :priority, :max, :ckey, :after, :at, :at, workflow_name, workflow_version FROM r),
e AS (INSERT INTO events (run_id, seq, type, message, at)
  SELECT id, 1, 'workflow.submitted', :queue, :at FROM r),
n AS (SELECT pg_notify(:chan, 'jobs') FROM r)
SELECT r.*, (SELECT count(*) FROM n) FROM r
-- name: queues_due
-- a job of the queues :qs is due: each queue's earliest queued job, the first entry of
-- jobs_due (asked by an idle claimer before it claims again, see `claim_jobs`)
SELECT 1 FROM unnest(:qs::text[]) q(q) WHERE (SELECT min(g.run_after) FROM jobs g
  WHERE g.queue = q.q AND g.status = 'queued') <= {_now} LIMIT 1
-- name: claim_free
-- keyless jobs in queues without caps, in one statement; one row of NULLs when none,
-- each row ending with "do keyed jobs wait too" (asked only when fewer than :n were claimed)
-- and "are ready jobs left" (Claimed.more: asked only when :n were);
-- each job's run is claimed with it for the worker's host (RunClaim; :owner NULL: none), so
-- its worker need not read or claim it again; a run another transaction holds (a cancel,
-- which locks the run and then its queued job) is skipped, not waited for: no deadlock.
-- The claim does not wait for the WAL flush (q): one lost in a crash only delays the run,
-- and the run's first durable write flushes it too (the WAL is written in order).
-- Priority holds across keys: of the best :n ready jobs (a), only the keyless ones ahead of
-- the first keyed one are claimed here; from there the shared claim (one per key) goes on
WITH a AS (SELECT id, priority, concurrency_key FROM jobs WHERE queue = ANY(:qs)
  AND status = 'queued' AND run_after <= {_now} ORDER BY priority DESC, id
  LIMIT :n FOR UPDATE SKIP LOCKED),
{_free_claim}
SELECT u.*, r.*, k.keyed, k.more FROM (SELECT CASE WHEN (SELECT count(*) FROM u) < :n
  THEN EXISTS (SELECT 1 FROM jobs WHERE queue = ANY(:qs) AND status = 'queued'
  AND concurrency_key IS NOT NULL) ELSE false END AS keyed,
  CASE WHEN (SELECT count(*) FROM u) = :n THEN EXISTS (SELECT 1 FROM jobs j
  WHERE j.queue = ANY(:qs) AND j.status = 'queued' AND j.run_after <= {_now}
  AND j.id NOT IN (SELECT id FROM u)) ELSE false END AS more) k {_free_rows}
-- name: claim_free_of
-- claim_free of the jobs of workflows (d) the worker registered, at versions it resumes,
-- and of jobs queued by an older tether (no workflow recorded: a NULL pair): the best :n
-- of each workflow from the index jobs_ready_workflow (L), then the best :n of those. A
-- job of another workflow is never read, however many wait ahead of these.
WITH d AS (SELECT * FROM unnest(:wnames::text[], :wversions::text[]) d(n, v)),
a AS (SELECT l.* FROM unnest(:qs::text[]) q(q) CROSS JOIN d CROSS JOIN LATERAL
  (SELECT j.id, j.priority, j.concurrency_key FROM jobs j WHERE j.queue = q.q AND {_job_of}
  AND j.status = 'queued' AND j.run_after <= {_now} ORDER BY j.priority DESC, j.id
  LIMIT :n FOR UPDATE SKIP LOCKED) l ORDER BY l.priority DESC, l.id LIMIT :n),
{_free_claim}
SELECT u.*, r.*, k.keyed, k.more FROM (SELECT CASE WHEN (SELECT count(*) FROM u) < :n
  THEN EXISTS (SELECT 1 FROM d JOIN jobs j ON {_job_of} WHERE j.queue = ANY(:qs)
  AND j.status = 'queued' AND j.concurrency_key IS NOT NULL) ELSE false END AS keyed,
  CASE WHEN (SELECT count(*) FROM u) = :n THEN EXISTS (SELECT 1 FROM d JOIN jobs j
  ON {_job_of} WHERE j.queue = ANY(:qs) AND j.status = 'queued' AND j.run_after <= {_now}
  AND j.id NOT IN (SELECT id FROM u)) ELSE false END AS more) k
  {_free_rows}
-- name: _job_of
-- a job j of workflow d (n, v): equalities the index jobs_ready_workflow finds, then the
-- exact version (a run without one is not a run of version '')
COALESCE(j.workflow_name, '') = COALESCE(d.n, '')
  AND COALESCE(j.workflow_version, '') = COALESCE(d.v, '')
  AND j.workflow_version IS NOT DISTINCT FROM d.v
-- name: _free_rows
LEFT JOIN u ON true LEFT JOIN LATERAL (SELECT {_run_cols} FROM rc WHERE rc.id = u.run_id) r ON true
-- name: _free_claim
-- claim_free's claim of the ready jobs a: the keyless ones ahead of the first keyed one
c AS (SELECT id FROM a WHERE concurrency_key IS NULL AND (priority, -id) > ALL
  (SELECT priority, -id FROM a WHERE concurrency_key IS NOT NULL)),
{_sync_off},
t AS (SELECT {_now} AS n FROM q),
u AS (UPDATE jobs SET status = 'claimed', worker = :worker,
  locked_until = t.n + make_interval(secs => :vis), attempt = attempt + 1, claimed_at = t.n,
  updated_at = :at FROM c, t WHERE jobs.id = c.id RETURNING {_job_cols}),
rc AS (UPDATE runs SET {_claim_set}, event_seq = event_seq + 1 WHERE :owner::text IS NOT NULL
  AND id IN (SELECT id FROM runs WHERE id IN (SELECT run_id FROM u) FOR UPDATE SKIP LOCKED)
  AND status IN {JOB_RUN} AND {_drives} AND {_claimable} RETURNING {_run_cols}, event_seq),
e AS (INSERT INTO events (run_id, seq, type, at) SELECT id, event_seq, :etype, :at FROM rc)
-- name: queue_lock
SELECT pg_advisory_xact_lock(hashtext('tether-queue:' || :q))
-- name: queue_counts
SELECT count(*) FILTER (WHERE status = 'claimed'),
  count(*) FILTER (WHERE claimed_at > {_now} - make_interval(secs => :window))
FROM jobs WHERE queue = :q
-- name: ready_jobs
SELECT j.id, j.concurrency_key, j.priority FROM jobs j WHERE j.queue = :q AND j.status = 'queued'
  AND j.run_after <= {_now} AND (j.concurrency_key IS NULL OR
  (pg_try_advisory_xact_lock(hashtext('tether-key:' || j.concurrency_key))
  AND NOT EXISTS (SELECT 1 FROM jobs k WHERE k.concurrency_key = j.concurrency_key
  AND k.status = 'claimed')))
ORDER BY j.priority DESC, j.id LIMIT :room FOR UPDATE SKIP LOCKED
-- name: queued_workflows
-- the workflows of the queued jobs of queues :qs, as (queue, name, version), NULLs for
-- none: one probe of the index jobs_ready_workflow per workflow, however many jobs wait
WITH RECURSIVE w AS (SELECT f.* FROM unnest(:qs::text[]) q(q) CROSS JOIN LATERAL
  (SELECT j.queue, COALESCE(j.workflow_name, '') AS n, COALESCE(j.workflow_version, '') AS v
  FROM jobs j WHERE j.queue = q.q AND j.status = 'queued' ORDER BY 2, 3 LIMIT 1) f
UNION ALL SELECT f.* FROM w CROSS JOIN LATERAL
  (SELECT j.queue, COALESCE(j.workflow_name, '') AS n, COALESCE(j.workflow_version, '') AS v
  FROM jobs j WHERE j.queue = w.queue AND j.status = 'queued'
  AND (COALESCE(j.workflow_name, ''), COALESCE(j.workflow_version, '')) > (w.n, w.v)
  ORDER BY 2, 3 LIMIT 1) f)
SELECT queue, NULLIF(n, ''), NULLIF(v, '') FROM w ORDER BY 1, 2, 3
-- name: ready_jobs_of
-- ready_jobs of the workflows d (see claim_free_of): the best :room of each, then of all
WITH d AS (SELECT * FROM unnest(:wnames::text[], :wversions::text[]) d(n, v))
SELECT l.* FROM d CROSS JOIN LATERAL (SELECT j.id, j.concurrency_key, j.priority FROM jobs j
  WHERE j.queue = :q AND {_job_of} AND j.status = 'queued' AND j.run_after <= {_now}
  AND (j.concurrency_key IS NULL OR
  (pg_try_advisory_xact_lock(hashtext('tether-key:' || j.concurrency_key))
  AND NOT EXISTS (SELECT 1 FROM jobs k WHERE k.concurrency_key = j.concurrency_key
  AND k.status = 'claimed')))
  ORDER BY j.priority DESC, j.id LIMIT :room FOR UPDATE SKIP LOCKED) l
ORDER BY l.priority DESC, l.id LIMIT :room
-- name: claim_ids
WITH t AS (SELECT {_now} AS n) UPDATE jobs SET status = 'claimed', worker = :worker,
  locked_until = t.n + make_interval(secs => :vis), attempt = attempt + 1, claimed_at = t.n,
  updated_at = :at FROM t WHERE id = ANY(:ids) RETURNING {_job_cols}
-- name: claim_run_job
-- the run's queued job, due or not, claimed for a process that drives the run itself (a
-- resume): as claim_ids, unless another claimed job holds its concurrency key (its lock
-- taken as ready_jobs takes it; the unique index jobs_claimed_per_key settles the rest)
WITH t AS (SELECT {_now} AS n) UPDATE jobs SET status = 'claimed', worker = :worker,
  locked_until = t.n + make_interval(secs => :vis), attempt = attempt + 1, claimed_at = t.n,
  updated_at = :at FROM t
WHERE jobs.run_id = :wid AND jobs.status = 'queued' AND (jobs.concurrency_key IS NULL OR
  (pg_try_advisory_xact_lock(hashtext('tether-key:' || jobs.concurrency_key))
  AND NOT EXISTS (SELECT 1 FROM jobs k WHERE k.concurrency_key = jobs.concurrency_key
  AND k.status = 'claimed')))
RETURNING {_job_cols}
-- name: renew_job
-- a job closed with its run's end (see _finish_notify) is still the worker's: not lost
UPDATE jobs SET locked_until = CASE WHEN status = 'claimed'
  THEN {_now} + make_interval(secs => :vis) END
WHERE id = :id AND worker = :worker AND status IN ('claimed', 'done')
-- name: job_of_worker
-- the run locked too: a wake or a cancel in flight (which queues no job while this one
-- is claimed) is waited for and seen, not read as it was before
SELECT j.run_id, {_job_run_status} FROM jobs j JOIN runs r ON r.id = j.run_id
WHERE j.id = :id AND j.worker = :worker AND j.status = 'claimed' FOR UPDATE OF j, r
-- name: finish_job_one
-- one statement: back to the queue if the run was woken meanwhile (or handed back), its
-- attempt not counted and no worker holding it, else done (or failed); the run locked as
-- in job_of_worker
WITH j AS (SELECT j.id, j.run_id, {_job_run_status} AS run_status FROM jobs j JOIN runs r
  ON r.id = j.run_id WHERE j.id = :id AND j.worker = :worker AND j.status = 'claimed'
  FOR UPDATE OF j, r),
u AS (UPDATE jobs SET status = CASE WHEN :error::text IS NULL AND j.run_status = 'pending'
  THEN 'queued' WHEN :error::text IS NULL THEN 'done' ELSE 'failed' END, last_error = :error,
  locked_until = NULL, run_after = CASE WHEN :error::text IS NULL AND j.run_status = 'pending'
  THEN :at ELSE jobs.run_after END, worker = CASE WHEN :error::text IS NULL
  AND j.run_status = 'pending' THEN NULL ELSE jobs.worker END,
  attempt = CASE WHEN :error::text IS NULL AND j.run_status = 'pending' AND jobs.attempt > 0
  THEN jobs.attempt - 1 ELSE jobs.attempt END,
  updated_at = :at FROM j WHERE jobs.id = j.id
  RETURNING jobs.status, jobs.run_id),
n AS (SELECT pg_notify(:chan, 'jobs') FROM u WHERE u.status = 'queued')
SELECT u.run_id, (SELECT count(*) FROM n) FROM u
-- name: stuck_runs
SELECT id FROM runs r WHERE status IN ('running', 'pending') AND queue IS NOT NULL
  AND updated_at <= {_now} - make_interval(secs => :idle) AND NOT EXISTS (SELECT 1 FROM jobs j
  WHERE j.run_id = r.id AND j.status IN ('queued', 'claimed')) FOR UPDATE SKIP LOCKED
-- name: orphaned_runs
-- or its owner is known dead (:dead, a process of this machine that has ended): at once
SELECT {_run_cols} FROM runs WHERE queue IS NULL AND workflow_name = ANY(:wfs) AND ({_orphan}
  OR (owner = ANY(:dead::text[]) AND {_dead_owners_run}))
ORDER BY updated_at LIMIT :limit
-- name: _dead_owners_run
-- a run a dead owner leaves to be driven: running, compensating, or cancelled with the
-- steps it left running still to be recorded cut short
(status = 'running' OR (status = 'cancelled' AND (cancel_requested = 'compensate'
  OR EXISTS (SELECT 1 FROM steps s WHERE s.run_id = runs.id AND s.status = 'running'))))
-- name: orphan_owners
-- the owners (named like :like) of runs of :wfs that a dead owner would leave undriven
SELECT DISTINCT owner FROM runs WHERE queue IS NULL AND workflow_name = ANY(:wfs)
  AND owner LIKE :like AND {_dead_owners_run}
-- name: orphans_to_adopt
-- as orphaned_runs, a dead owner's too (:dead)
SELECT id, owner FROM runs WHERE queue IS NULL AND workflow_name = ANY(:wfs) AND ({_orphan}
  OR (owner = ANY(:dead::text[]) AND {_dead_owners_run}))
  -- a compensation is driven, never queued
  AND status != 'cancelled'
ORDER BY updated_at LIMIT :limit FOR UPDATE SKIP LOCKED
-- name: list_jobs
SELECT {_job_cols} FROM jobs WHERE (:wid::text IS NULL OR run_id = :wid)
  AND (:status::text IS NULL OR status = :status) ORDER BY id LIMIT :limit
-- name: _outbox_due
-- the undelivered events of the runs waiting longest, each run's in seq order (never by
-- `at`: hosts' clocks differ) and only up to its first event waiting for a retry or
-- claimed by a publisher: a run backing off takes no place in the batch and holds back
-- only its own events. One scan of the undelivered events and no join, so no plan
-- depends on fresh statistics.
WITH t AS (SELECT {_now} AS n),
p AS (SELECT run_id, seq, type, message, detail, at, attempts, min(at) OVER w AS since,
    min(CASE WHEN next_attempt_at > t.n THEN seq END) OVER w AS upto
  FROM events CROSS JOIN t WHERE published_at IS NULL AND dead_at IS NULL
  WINDOW w AS (PARTITION BY run_id))
-- name: outbox_pending
{_outbox_due}
SELECT run_id, seq, type, message, detail::text, at, attempts FROM p
WHERE upto IS NULL OR seq < upto ORDER BY since, run_id, seq LIMIT :limit
-- name: outbox_claim
-- (each with its run's created_at: a run id reused after a prune numbers its events
-- from 1 again, and a delivery id must not repeat the earlier run's)
-- the batch outbox_pending reads, claimed until now + :lease in the same statement, so a
-- second publisher skips it until then. Rows another claim holds are skipped, not waited
-- for, and one it committed since this statement's snapshot fails the recheck (k); a run
-- is taken only with its first claimable event (head), so a racing claim that has it
-- keeps the whole run: never its later events out of order.
{_outbox_due},
c AS (SELECT run_id, seq, since, min(seq) OVER (PARTITION BY run_id) AS head FROM p
  WHERE upto IS NULL OR seq < upto ORDER BY since, run_id, seq LIMIT :limit),
k AS (SELECT e.run_id, e.seq, c.since, c.head FROM events e JOIN c USING (run_id, seq)
  WHERE e.published_at IS NULL AND e.dead_at IS NULL
    AND (e.next_attempt_at IS NULL OR e.next_attempt_at <= (SELECT n FROM t))
  FOR UPDATE OF e SKIP LOCKED)
UPDATE events SET next_attempt_at = (SELECT n FROM t) + make_interval(secs => :lease)
FROM k WHERE events.run_id = k.run_id AND events.seq = k.seq
  AND EXISTS (SELECT 1 FROM k h WHERE h.run_id = k.run_id AND h.seq = k.head)
RETURNING events.run_id, events.seq, events.type, events.message, events.detail::text,
  events.at, events.attempts, events.next_attempt_at, k.since,
  (SELECT r.created_at FROM runs r WHERE r.id = events.run_id)
-- name: outbox_delivered
-- the events (:wids[i], :seqs[i]), in one statement
UPDATE events SET published_at = :at, attempts = attempts + 1
FROM unnest(:wids::text[], :seqs::bigint[]) AS d(run_id, seq)
WHERE events.run_id = d.run_id AND events.seq = d.seq
-- name: outbox_failed
UPDATE events SET attempts = attempts + 1, last_error = :error,
  next_attempt_at = :next::timestamptz, dead_at = :dead::timestamptz
WHERE run_id = :wid AND seq = :seq AND published_at IS NULL
-- name: outbox_release
-- claimed events a publisher did not try, handed back at once: only while still its claim
-- (:until) and not delivered meanwhile
UPDATE events SET next_attempt_at = NULL
FROM unnest(:wids::text[], :seqs::bigint[]) AS d(run_id, seq)
WHERE events.run_id = d.run_id AND events.seq = d.seq AND events.published_at IS NULL
  AND events.dead_at IS NULL AND events.next_attempt_at = :until::timestamptz
-- name: outbox_dead
SELECT run_id, seq, type, message, detail::text, at, attempts, last_error, dead_at FROM events
WHERE dead_at IS NOT NULL ORDER BY dead_at, run_id, seq LIMIT :limit

-- name: idempotency_get
SELECT status, result::text, updated_at > :at - make_interval(secs => :stale) FROM idempotency
WHERE command = :command AND key = :key FOR UPDATE
-- name: idempotency_done
UPDATE idempotency SET status = 'done', result = :result::json, updated_at = :at
WHERE command = :command AND key = :key
-- name: prunable_runs
-- with :keep, not a run with an event the outbox has yet to deliver (the App has sinks)
SELECT id FROM runs r WHERE status = ANY(:statuses) AND finished_at < :before
  AND NOT {_family_kept}
ORDER BY finished_at, id LIMIT :limit
-- name: run_undelivered
SELECT 1 FROM events WHERE run_id = :id AND published_at IS NULL AND dead_at IS NULL LIMIT 1
-- name: delete_idempotency_of
DELETE FROM idempotency WHERE json_typeof(result) = 'object'
  AND result->>'workflow_id' = :id
-- name: pause_schedule
UPDATE schedules SET paused = :paused, updated_at = :at,
  fired_until = CASE WHEN paused AND NOT :paused THEN greatest(fired_until, :at) ELSE fired_until END
WHERE name = :name
-- name: _calls_of_ids
c.run_id = ANY(CAST(:ids AS text[]))
-- name: _usage_from
FROM ai_calls c JOIN runs r ON r.id = c.run_id
WHERE (CAST(:any_id AS boolean) OR c.run_id = ANY(CAST(:ids AS text[])))
  AND (CAST(:workflow AS text) IS NULL OR r.workflow_name = :workflow)
  AND (CAST(:tag AS text) IS NULL OR r.tags ? CAST(:tag AS text))
  AND (CAST(:since AS timestamptz) IS NULL OR c.at >= :since) AND (CAST(:until AS timestamptz) IS NULL OR c.at < :until)
-- name: ai_usage_by_day
SELECT to_char(c.at AT TIME ZONE 'UTC', 'YYYY-MM-DD'), {_usage_sums} {_usage_from} GROUP BY 1 ORDER BY 1
-- name: _calls_not_of_planned
-- not a call of the runs :planned (on PostgreSQL a hashed set, not a scan of the array
-- per call)
c.run_id NOT IN (SELECT unnest(CAST(:planned AS text[])))

-- name: _run_filter
-- a `RunFilter` but its status (each left NULL matches every run)
(:workflow::text IS NULL OR workflow_name = :workflow)
  AND (:tenant::text IS NULL OR tenant = :tenant)
  AND (:tag::text IS NULL OR tags @> jsonb_build_array(:tag::text))
  AND (:parent::text IS NULL OR parent_id = :parent)
  AND (:after::timestamptz IS NULL OR created_at >= :after)
  AND (:before::timestamptz IS NULL OR created_at < :before)
-- name: _run_page
-- newest first; the cursor is the last run shown (its time, should it be deleted meanwhile)
WHERE (:status::text IS NULL OR status = :status) AND {_run_filter}
  AND (:cur::text IS NULL
    OR created_at < coalesce((SELECT created_at FROM runs WHERE id = :cur), :cur_at::timestamptz)
    OR (created_at = coalesce((SELECT created_at FROM runs WHERE id = :cur), :cur_at::timestamptz)
      AND id > :cur))
ORDER BY created_at DESC, id LIMIT :limit
-- name: list_runs_page
SELECT {_run_cols} FROM runs {_run_page}
-- name: _run_heads
-- `_run_cols` without input, output and initial state (NULL: never read, nor detoasted),
-- the error and state only if asked; the error also of a run that ended before
-- `end_reason` was recorded, whose end reason is read from it (`_rows._end_reason`)
id, workflow_name, workflow_version, status, NULL, NULL,
  CASE WHEN :error::boolean OR (end_reason IS NULL AND status IN {TERMINAL})
    THEN error::text END,
  CASE WHEN :state::boolean THEN state::text END, priority, tags::text, tenant, parent_id,
  idempotency_key, owner, owner_generation, created_at, updated_at, started_at, finished_at,
  compute_seconds, cancel_requested, queue, owner_expires_at, step_rule, budget, attempt,
  end_reason, NULL
-- name: list_run_heads
SELECT {_run_heads} FROM runs {_run_page}
-- name: run_heads
-- the heads of the runs named (a run page's children), in no order
SELECT {_run_heads} FROM runs WHERE id = ANY(:ids)
-- name: run_counts
SELECT workflow_name, status, count(*) FROM runs WHERE {_run_filter}
GROUP BY workflow_name, status ORDER BY 1, 2

-- name: touch_api_token
-- at most once a minute: using a token must not cost a durable write per request
UPDATE api_tokens SET last_used_at = :at
WHERE id = :id AND (last_used_at IS NULL OR last_used_at < :at - interval '60 seconds')
-- name: api_idempotency_get
SELECT request_hash, status, response FROM api_idempotency WHERE key = :key FOR UPDATE
-- The numbers behind /metrics: histograms over every recorded step and ended job (a
-- prune, or a rerun forgetting steps, lowers them: Prometheus reads a counter reset). A
-- job's wait counts once it ended: a released job is due again later than its claim.
-- name: metric_step_seconds
SELECT sum(CASE WHEN d <= 0.005 THEN 1 ELSE 0 END), sum(CASE WHEN d <= 0.01 THEN 1 ELSE 0 END), sum(CASE WHEN d <= 0.025 THEN 1 ELSE 0 END), sum(CASE WHEN d <= 0.05 THEN 1 ELSE 0 END), sum(CASE WHEN d <= 0.1 THEN 1 ELSE 0 END), sum(CASE WHEN d <= 0.25 THEN 1 ELSE 0 END), sum(CASE WHEN d <= 0.5 THEN 1 ELSE 0 END), sum(CASE WHEN d <= 1 THEN 1 ELSE 0 END), sum(CASE WHEN d <= 2.5 THEN 1 ELSE 0 END), sum(CASE WHEN d <= 5 THEN 1 ELSE 0 END), sum(CASE WHEN d <= 10 THEN 1 ELSE 0 END), sum(CASE WHEN d <= 30 THEN 1 ELSE 0 END), sum(CASE WHEN d <= 60 THEN 1 ELSE 0 END), sum(CASE WHEN d <= 300 THEN 1 ELSE 0 END), sum(CASE WHEN d <= 1800 THEN 1 ELSE 0 END), count(*), COALESCE(sum(d), 0) FROM (SELECT extract(epoch FROM completed_at - started_at) AS d FROM steps WHERE status = 'completed' AND started_at IS NOT NULL AND completed_at IS NOT NULL) AS x
-- name: metric_job_wait_seconds
SELECT sum(CASE WHEN d <= 0.005 THEN 1 ELSE 0 END), sum(CASE WHEN d <= 0.01 THEN 1 ELSE 0 END), sum(CASE WHEN d <= 0.025 THEN 1 ELSE 0 END), sum(CASE WHEN d <= 0.05 THEN 1 ELSE 0 END), sum(CASE WHEN d <= 0.1 THEN 1 ELSE 0 END), sum(CASE WHEN d <= 0.25 THEN 1 ELSE 0 END), sum(CASE WHEN d <= 0.5 THEN 1 ELSE 0 END), sum(CASE WHEN d <= 1 THEN 1 ELSE 0 END), sum(CASE WHEN d <= 2.5 THEN 1 ELSE 0 END), sum(CASE WHEN d <= 5 THEN 1 ELSE 0 END), sum(CASE WHEN d <= 10 THEN 1 ELSE 0 END), sum(CASE WHEN d <= 30 THEN 1 ELSE 0 END), sum(CASE WHEN d <= 60 THEN 1 ELSE 0 END), sum(CASE WHEN d <= 300 THEN 1 ELSE 0 END), sum(CASE WHEN d <= 1800 THEN 1 ELSE 0 END), count(*), COALESCE(sum(d), 0) FROM (SELECT greatest(0, extract(epoch FROM claimed_at - run_after)) AS d FROM jobs WHERE status IN ('done', 'failed') AND claimed_at IS NOT NULL) AS x
-- name: metric_job_run_seconds
SELECT sum(CASE WHEN d <= 0.005 THEN 1 ELSE 0 END), sum(CASE WHEN d <= 0.01 THEN 1 ELSE 0 END), sum(CASE WHEN d <= 0.025 THEN 1 ELSE 0 END), sum(CASE WHEN d <= 0.05 THEN 1 ELSE 0 END), sum(CASE WHEN d <= 0.1 THEN 1 ELSE 0 END), sum(CASE WHEN d <= 0.25 THEN 1 ELSE 0 END), sum(CASE WHEN d <= 0.5 THEN 1 ELSE 0 END), sum(CASE WHEN d <= 1 THEN 1 ELSE 0 END), sum(CASE WHEN d <= 2.5 THEN 1 ELSE 0 END), sum(CASE WHEN d <= 5 THEN 1 ELSE 0 END), sum(CASE WHEN d <= 10 THEN 1 ELSE 0 END), sum(CASE WHEN d <= 30 THEN 1 ELSE 0 END), sum(CASE WHEN d <= 60 THEN 1 ELSE 0 END), sum(CASE WHEN d <= 300 THEN 1 ELSE 0 END), sum(CASE WHEN d <= 1800 THEN 1 ELSE 0 END), count(*), COALESCE(sum(d), 0) FROM (SELECT extract(epoch FROM updated_at - claimed_at) AS d FROM jobs WHERE status = 'done' AND claimed_at IS NOT NULL) AS x
-- name: event_lock
-- taken by send_event and by the registration of a wait for that event type, before either
-- locks anything else: a wait registered while the event is being sent sees it in the inbox,
-- or is seen by it (else each missed the other's uncommitted row, and the run waited on)
SELECT pg_advisory_xact_lock(hashtext('tether-event:' || :name))
-- name: _blob_key
-- a blob key as its prefix queries compare it: byte by byte, as its index is built (0017)
key COLLATE "C"
-- name: lock_blob_key
-- the key a put writes, until its transaction ends: a put of the same key beside it waits
-- (the COPY that writes the row cannot replace one: `PgTx.write_blob`)
SELECT pg_advisory_xact_lock(hashtext('tether-blob:' || :key))
-- name: copy_blob
-- a blob's row, fed in binary by `PgTx.write_blob` (its body a slice at a time)
COPY blobs (key, size, created_at, body) FROM STDIN (FORMAT BINARY)
-- name: get_blob
-- the body as slices of 1 MiB, each row (offset, size of the body, slice), all of one
-- statement (one snapshot: never the slices of two puts), streamed (`PgTx.read_blob`)
-- into one buffer of the body's size: read at once, libpq held the body twice more (its
-- input buffer, its result), and as text it came back twice its size in hex (the
-- server makes no text of 1 GB). A body the server keeps compressed is unpacked once
-- (`|| ''`): a slice of it unpacks all that comes before it (64 MiB of JSON-like text
-- in 1 MiB slices: 2.1 s, not 0.2 s); a plain one is read from its TOAST rows slice by
-- slice. Each slice is placed by its offset, so no ORDER BY: it sorted every slice before
-- the first was sent
SELECT s - 1, octet_length(d.body), substring(d.body FROM s FOR 1048576)
FROM (SELECT CASE WHEN pg_column_size(body) < octet_length(body) THEN body || ''::bytea
  ELSE body END AS body FROM blobs WHERE key = :key OFFSET 0) AS d,
  generate_series(1, greatest(octet_length(d.body), 1), 1048576) AS s
