-- Named queries of the SQLite store (see _sql.py). Times are epoch seconds;
-- {_now} (:now) is the time judging expiry, computed by the adapter; lists are JSON
-- arrays read with json_each.

-- name: _now
:now
-- name: _run_cols
id, workflow_name, workflow_version, status, input, output, error, state, priority, tags,
tenant, parent_id, idempotency_key, owner, owner_generation, created_at, updated_at,
started_at, finished_at, compute_seconds, cancel_requested, queue, owner_expires_at, step_rule,
budget, attempt, end_reason, initial_state
-- name: _step_cols
run_id, step_key, name, status, attempts, idempotency_key, result, error, started_at,
completed_at, updated_at, seq
-- name: _lock_cols
scope, key, holder, generation, run_id, detail, acquired_at, heartbeat_at, expires_at,
released_at
-- name: _wait_cols
id, run_id, wait_key, kind, name, match, status, payload, due_at, created_at, resolved_at
-- name: _in_ids
-- `x {_in_ids}`: x is one of the JSON array :ids
IN (SELECT value FROM json_each(:ids))
-- name: runs_lock
-- (one writer at a time already: BEGIN IMMEDIATE holds every run)
SELECT id FROM runs WHERE id {_in_ids}
-- name: _wait_order
-- the order the code asked for its waits in (`seq` is NULL for waits of an older tether)
created_at, seq, wait_key
-- name: _job_cols
id, run_id, queue, status, priority, attempt, max_attempts, concurrency_key, worker,
locked_until, run_after, last_error
-- name: _claimable
-- another owner's live claim keeps a run (running, or compensating a cancel); force takes
-- it anyway, a dead owner by name
(:force OR status NOT IN ('running', 'cancelled') OR owner IS NULL OR owner = :owner
 OR owner_expires_at IS NULL OR owner_expires_at <= {_now} OR owner IS :dead)
-- name: _orphan
-- nobody drives it: the owner's claim lapsed, or it sat runnable past the grace period
-- (a run cancelled with compensation pending is runnable: its compensations are left)
((status = 'running' AND (owner_expires_at <= {_now} OR (owner_expires_at IS NULL
  AND updated_at <= {_now} - :grace))) OR (status = 'pending' AND updated_at <= {_now} - :grace)
 OR (status = 'cancelled' AND cancel_requested = 'compensate' AND (owner_expires_at <= {_now}
  OR (owner_expires_at IS NULL AND updated_at <= {_now} - :grace))))

-- name: bump
-- its answer is bump_then's: in SQLite a RETURNING clause costs more CPU than a second
-- statement (about 15 µs of a step's ~300, bench/steps.py); `SQLiteTx` runs the two
UPDATE runs SET event_seq = event_seq + :n, updated_at = :at
WHERE id = :wid AND (:gen IS NULL OR (owner_generation = :gen AND (:comp OR status NOT IN {CLOSED})))
-- name: bump_then
-- no row when the fence refused the UPDATE (nothing changed)
SELECT event_seq FROM runs WHERE id = :wid AND changes() > 0
-- name: insert_event
INSERT INTO events (run_id, seq, type, message, detail, at)
VALUES (:wid, :seq, :type, :message, :detail, :at)
-- name: run_status_locked
SELECT status, end_reason FROM runs WHERE id = :wid
-- name: run_ended_locked
-- the run's status, and whether it ended before :before (NULL when :before is)
SELECT status, finished_at < :before FROM runs WHERE id = :wid
-- name: newest_job
-- a waiter's cheap look for new work another process queued (_sqlite_changes)
SELECT max(id) FROM jobs

-- name: insert_run
INSERT INTO runs (id, workflow_name, workflow_version, status, input, state, priority, tags,
  tenant, parent_id, idempotency_key, queue, concurrency_key, created_at, updated_at, step_rule,
  budget, initial_state)
VALUES (:workflow_id, :workflow_name, :workflow_version, 'pending', :input, :state, :priority,
  :tags, :tenant, :parent_id, :idempotency_key, :queue, :ckey, :at, :at, :step_rule, :budget,
  :state)
ON CONFLICT DO NOTHING
-- name: list_runs
SELECT {_run_cols} FROM runs WHERE (:status IS NULL OR status = :status)
ORDER BY created_at DESC, id LIMIT :limit
-- name: _claim_set
owner = :owner, owner_generation = owner_generation + 1,
  owner_expires_at = {_now} + :lease, status = 'running', started_at = COALESCE(started_at, :at),
  finished_at = NULL, end_reason = NULL, updated_at = :at
-- name: _run_unlocked
-- one writer at a time: nothing else holds the run
1 = 1
-- name: _drives
EXISTS (SELECT 1 FROM json_each(:names) n JOIN json_each(:versions) v ON v.key = n.key
  WHERE n.value = workflow_name AND v.value IS workflow_version)
-- name: claim_run
UPDATE runs SET {_claim_set}
WHERE id = :wid AND status NOT IN {TERMINAL} AND {_claimable} RETURNING {_run_cols}
-- name: claim_run_compensating
UPDATE runs SET owner = :owner, owner_generation = owner_generation + 1,
  owner_expires_at = {_now} + :lease, updated_at = :at
WHERE id = :wid AND status = 'cancelled' AND cancel_requested = 'compensate' AND {_claimable}
RETURNING {_run_cols}
-- name: renew_owner
UPDATE runs SET owner_expires_at = {_now} + :lease
WHERE owner = :owner AND id IN (SELECT value FROM json_each(:ids)) AND (status = 'running'
  OR (status = 'cancelled' AND cancel_requested = 'compensate')) RETURNING id, status
-- name: release_run_check
SELECT status FROM runs WHERE id = :wid AND owner_generation = :gen
-- name: finish_run
UPDATE runs SET status = :status, output = :output, error = COALESCE(:error, error),
  finished_at = :at, compute_seconds = compute_seconds + :cs, cancel_requested = NULL,
  end_reason = :reason
WHERE id = :wid
-- name: set_state
UPDATE runs SET state = :state WHERE id = :wid
-- name: mark_failing
UPDATE runs SET error = :error, end_reason = :reason WHERE id = :wid AND status = 'running'
RETURNING 1
-- name: last_event
SELECT run_id, seq, type, message, detail, at FROM events
WHERE run_id = :wid AND type = :type ORDER BY seq DESC LIMIT 1
-- name: list_events
SELECT run_id, seq, type, message, detail, at FROM events WHERE run_id = :wid AND seq > :after
ORDER BY seq LIMIT COALESCE(:limit, -1)
-- name: latest_events
-- the newest event of each run :wids, one probe of the primary key each
SELECT e.run_id, e.seq, e.type, e.message, e.detail, e.at FROM json_each(:wids) w
JOIN events e ON e.run_id = w.value
  AND e.seq = (SELECT max(seq) FROM events WHERE run_id = w.value)

-- name: newest_generations
-- the newest run of each :bases, whose runs are `<base>` and `<base>:<n>`: a walk of the
-- primary key over that name's runs only (ids compare byte by byte), the longest id and
-- then the highest winning (`:10` after `:9`)
SELECT n.base, {_run_cols} FROM (SELECT b.value AS base, (SELECT id FROM runs
  WHERE id = b.value OR (id > b.value || ':' AND id < b.value || ';'
    AND substr(id, length(b.value) + 2) NOT GLOB '*[^0-9]*')
  ORDER BY length(id) DESC, id DESC LIMIT 1) AS wid FROM json_each(:bases) b) n
JOIN runs ON runs.id = n.wid

-- name: start_step
INSERT INTO steps (run_id, step_key, name, status, attempts, idempotency_key, started_at,
  updated_at) VALUES (:wid, :key, :key, 'running', 1, :ikey, :at, :at)
ON CONFLICT (run_id, step_key) DO UPDATE SET status = 'running',
  attempts = CASE WHEN steps.idempotency_key IS excluded.idempotency_key
    THEN steps.attempts + 1 ELSE 1 END,
  result = CASE WHEN steps.idempotency_key IS excluded.idempotency_key
    THEN steps.result ELSE NULL END,
  idempotency_key = excluded.idempotency_key, completed_at = NULL,
  started_at = excluded.started_at, updated_at = excluded.updated_at
-- name: start_step_then
SELECT attempts, result, error FROM steps WHERE run_id = :wid AND step_key = :key
-- name: complete_step
UPDATE steps SET status = 'completed', result = :result, error = NULL, completed_at = :at,
  updated_at = :at WHERE run_id = :wid AND step_key = :key
-- name: fail_step
UPDATE steps SET status = 'failed', error = :error, updated_at = :at
WHERE run_id = :wid AND step_key = :key
-- name: save_value
INSERT INTO steps (run_id, step_key, name, status, attempts, result, started_at, completed_at,
  updated_at, seq) VALUES (:wid, :key, :key, 'completed', 1, :value, :at, :at, :at, :seq)
ON CONFLICT (run_id, step_key) DO NOTHING
-- name: write_state
UPDATE runs SET state = :state, updated_at = :at WHERE id = :wid
-- name: record_heartbeat
INSERT INTO heartbeats (run_id, key, at, detail) VALUES (:wid, :key, :at, :detail)
ON CONFLICT (run_id, key) DO UPDATE SET at = excluded.at, detail = excluded.detail
-- name: list_heartbeats
SELECT run_id, key, at, detail FROM heartbeats WHERE run_id = :wid ORDER BY key

-- name: lock_current
-- the lock, the time, and its run's status and attempt (a lock kept by a parked run)
SELECT {_lock_cols}, {_now}, (SELECT status FROM runs WHERE id = locks.run_id),
  (SELECT attempt FROM runs WHERE id = locks.run_id)
FROM locks WHERE scope = :scope AND key = :key
-- name: lock_insert
INSERT INTO locks (scope, key, holder, generation, run_id, detail, acquired_at, heartbeat_at,
  expires_at) VALUES (:scope, :key, :holder, 1, :run, :detail, {_now}, {_now}, {_now} + :ttl)
ON CONFLICT DO NOTHING RETURNING {_lock_cols}
-- name: lock_take
UPDATE locks SET holder = :holder, generation = generation + 1, run_id = :run,
  detail = :detail, acquired_at = :t, heartbeat_at = :t, expires_at = :t + :ttl,
  released_at = NULL WHERE scope = :scope AND key = :key RETURNING {_lock_cols}
-- name: lock_extend
UPDATE locks SET heartbeat_at = :t, expires_at = :t + :ttl, detail = COALESCE(:detail, detail)
WHERE scope = :scope AND key = :key RETURNING {_lock_cols}
-- name: renew_lock
-- the holder's own claim, even if it lapsed: nobody took it meanwhile (a taker is
-- the holder now), so a renewal late by a stall is no reason to let a live holder go
UPDATE locks SET heartbeat_at = {_now}, expires_at = {_now} + :ttl
WHERE scope = :scope AND key = :key AND holder = :holder AND released_at IS NULL
RETURNING {_lock_cols}
-- name: list_locks
SELECT {_lock_cols} FROM locks WHERE scope = :scope AND generation > 0
  AND (:run IS NULL OR run_id = :run) ORDER BY key
-- name: forget_silent_locks
-- a lock no longer held whose holder went silent, unless a run took it (a mutex kept by
-- its parked run) or its holder still owns a running run under a live claim
DELETE FROM locks WHERE scope = :scope AND run_id IS NULL
  AND (released_at IS NOT NULL OR expires_at <= {_now})
  AND COALESCE(released_at, heartbeat_at) < {_now} - :silent
  AND NOT EXISTS (SELECT 1 FROM runs WHERE runs.owner = locks.holder
    AND runs.status = 'running' AND runs.owner_expires_at > {_now})

-- name: wait_insert
INSERT INTO waitpoints (id, run_id, wait_key, kind, name, match, status, due_at, created_at,
  seq)
VALUES (:id, :wid, :key, :kind, :name, :match, 'pending', :due, :at, :seq) RETURNING {_wait_cols}
-- name: wait_resolve
UPDATE waitpoints SET status = 'resolved', payload = :payload, inbox_id = :inbox,
  resolved_at = :at WHERE id = :id RETURNING {_wait_cols}
-- name: inbox_signal
SELECT id, payload FROM inbox WHERE kind = 'signal' AND name = :name AND target = :wid
  AND consumed_by IS NULL AND expires_at > :at ORDER BY id LIMIT 1
-- name: inbox_events_for
-- events sent since the run began that none of its waits took, nor one a rerun
-- forgot (`rerun_events_taken`)
SELECT i.id, i.payload FROM inbox i, runs r WHERE r.id = :wid AND i.kind = 'event'
  AND i.name = :name AND i.created_at >= r.created_at AND i.expires_at > :at
  AND i.id NOT IN (SELECT inbox_id FROM waitpoints WHERE run_id = :wid AND inbox_id IS NOT NULL)
  AND i.id NOT IN (SELECT CAST(t.consumed_by AS INTEGER) FROM inbox t
    WHERE t.kind = 'event_taken' AND t.name = :name AND t.target = :wid)
ORDER BY i.id
-- name: child_outcome
SELECT status, output, error FROM runs WHERE id = :id
-- name: waits_resolved
SELECT 1 FROM waitpoints WHERE run_id = :wid AND status != 'pending'
  AND wait_key IN (SELECT value FROM json_each(:keys)) LIMIT 1
-- name: inbox_add_event
INSERT INTO inbox (kind, name, payload, created_at, expires_at)
VALUES ('event', :name, :payload, :at, :expires) RETURNING id
-- name: waits_for_event
-- (a wait whose timeout has passed is left to `fire_due`, as for a signal)
SELECT id, run_id, wait_key, match FROM waitpoints WHERE kind = 'event' AND name = :name
  AND status = 'pending' AND (due_at IS NULL OR due_at > :at) ORDER BY {_wait_order}
-- name: inbox_add_signal
INSERT INTO inbox (kind, target, name, payload, created_at, expires_at)
VALUES ('signal', :wid, :name, :payload, :at, :expires)
-- name: token_get
SELECT run_id, wait_key, status FROM waitpoints WHERE id = :id AND kind = 'token'
-- name: waits_on_ended_children
SELECT w.name, c.status, c.output, c.error FROM waitpoints w JOIN runs c ON c.id = w.name
WHERE w.kind = 'run' AND w.status = 'pending' AND c.status IN {TERMINAL}
-- name: cancel_tree_lock
-- (one writer at a time already: BEGIN IMMEDIATE holds every run)
SELECT :wid WHERE 0
-- name: cancel_one
UPDATE runs SET status = 'cancelled', error = :error, finished_at = :at, cancel_requested = :mode,
  end_reason = :reason WHERE id = :id AND status NOT IN {TERMINAL} AND end_reason IS NULL
RETURNING id, queue
-- name: child_waits_resolve
UPDATE waitpoints SET status = 'resolved', payload = :payload, resolved_at = :at
WHERE kind = 'run' AND name = :child AND status = 'pending' RETURNING run_id, wait_key
-- name: queue_lock
SELECT :q
-- name: queue_counts
SELECT (SELECT COUNT(*) FROM jobs WHERE queue = :q AND status = 'claimed'),
  (SELECT COUNT(*) FROM jobs WHERE queue = :q AND claimed_at > {_now} - :window)
-- name: queues_due
-- a job of the queues :qs is due: each queue's earliest queued job, the first entry of
-- jobs_due (asked by an idle claimer before it claims again, see `claim_jobs`)
SELECT 1 FROM json_each(:qs) q WHERE (SELECT g.run_after FROM jobs g INDEXED BY jobs_due
  WHERE g.queue = q.value AND g.status = 'queued' ORDER BY g.run_after LIMIT 1) <= {_now}
LIMIT 1
-- name: ready_jobs
SELECT j.id, j.concurrency_key, j.priority FROM jobs j WHERE j.queue = :q AND j.status = 'queued'
  AND j.run_after <= {_now} AND (j.concurrency_key IS NULL OR NOT EXISTS (SELECT 1 FROM jobs k
  WHERE k.concurrency_key = j.concurrency_key AND k.status = 'claimed'))
ORDER BY j.priority DESC, j.id LIMIT :room
-- name: queued_workflows
-- the workflows of the queued jobs of queues :qs, as (queue, name, version), NULLs for none
SELECT DISTINCT j.queue, j.workflow_name, j.workflow_version FROM json_each(:qs) q
JOIN jobs j ON j.queue = q.value AND j.status = 'queued' ORDER BY 1, 2, 3
-- name: ready_jobs_of
-- ready_jobs of the workflows (n, v) the worker registered, at versions it resumes, and of
-- jobs queued by an older tether (no workflow recorded: a null pair): the best :room of
-- each from the index jobs_ready_workflow, then of all. A job of another workflow is
-- never read, however many wait ahead of these.
SELECT j.id, j.concurrency_key, j.priority FROM json_each(:wnames) n
JOIN json_each(:wversions) v ON v.key = n.key
JOIN jobs j ON j.id IN (SELECT i.id FROM jobs i WHERE i.queue = :q AND i.status = 'queued'
  AND i.workflow_name IS n.value AND i.workflow_version IS v.value AND i.run_after <= {_now}
  AND (i.concurrency_key IS NULL OR NOT EXISTS (SELECT 1 FROM jobs k
  WHERE k.concurrency_key = i.concurrency_key AND k.status = 'claimed'))
  ORDER BY i.priority DESC, i.id LIMIT :room)
ORDER BY j.priority DESC, j.id LIMIT :room
-- name: claim_ids
UPDATE jobs SET status = 'claimed', worker = :worker, locked_until = {_now} + :vis,
  attempt = attempt + 1, claimed_at = {_now}, updated_at = :at
WHERE id IN (SELECT value FROM json_each(:ids)) RETURNING {_job_cols}
-- name: claim_run_job
-- the run's queued job, due or not, claimed for a process that drives the run itself (a
-- resume): as claim_ids, unless another claimed job holds its concurrency key
UPDATE jobs SET status = 'claimed', worker = :worker, locked_until = {_now} + :vis,
  attempt = attempt + 1, claimed_at = {_now}, updated_at = :at
WHERE run_id = :wid AND status = 'queued' AND (concurrency_key IS NULL OR NOT EXISTS
  (SELECT 1 FROM jobs k WHERE k.concurrency_key = jobs.concurrency_key AND k.status = 'claimed'))
RETURNING {_job_cols}
-- name: renew_job
-- a job closed with its run's end (close_job_of_run) is still the worker's: not lost
UPDATE jobs SET locked_until = CASE WHEN status = 'claimed' THEN {_now} + :vis END
WHERE id = :id AND worker = :worker AND status IN ('claimed', 'done')
-- name: job_of_worker
SELECT j.run_id, {_job_run_status} FROM jobs j JOIN runs r ON r.id = j.run_id
WHERE j.id = :id AND j.worker = :worker AND j.status = 'claimed'
-- name: stuck_runs
SELECT id FROM runs r WHERE status IN ('running', 'pending') AND queue IS NOT NULL
  AND updated_at <= {_now} - :idle AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.run_id = r.id
  AND j.status IN ('queued', 'claimed'))
-- name: orphaned_runs
-- or its owner is known dead (:dead, a process of this machine that has ended): at once
SELECT {_run_cols} FROM runs WHERE queue IS NULL
  AND workflow_name IN (SELECT value FROM json_each(:wfs)) AND ({_orphan}
  OR (owner IN (SELECT value FROM json_each(:dead)) AND {_dead_owners_run}))
ORDER BY updated_at LIMIT :limit
-- name: _dead_owners_run
-- a run a dead owner leaves to be driven: running, compensating, or cancelled with the
-- steps it left running still to be recorded cut short
(status = 'running' OR (status = 'cancelled' AND (cancel_requested = 'compensate'
  OR EXISTS (SELECT 1 FROM steps s WHERE s.run_id = runs.id AND s.status = 'running'))))
-- name: orphan_owners
-- the owners (named like :like) of runs of :wfs that a dead owner would leave undriven
SELECT DISTINCT owner FROM runs WHERE queue IS NULL
  AND workflow_name IN (SELECT value FROM json_each(:wfs))
  AND owner LIKE :like AND {_dead_owners_run}
-- name: orphans_to_adopt
-- as orphaned_runs, a dead owner's too (:dead)
SELECT id, owner FROM runs WHERE queue IS NULL
  AND workflow_name IN (SELECT value FROM json_each(:wfs)) AND ({_orphan}
  OR (owner IN (SELECT value FROM json_each(:dead)) AND {_dead_owners_run}))
  -- a compensation is driven, never queued
  AND status != 'cancelled'
ORDER BY updated_at LIMIT :limit
-- name: list_jobs
SELECT {_job_cols} FROM jobs WHERE (:wid IS NULL OR run_id = :wid)
  AND (:status IS NULL OR status = :status) ORDER BY id LIMIT :limit
-- name: _outbox_due
-- the undelivered events of the runs waiting longest, each run's in seq order (never by
-- `at`: hosts' clocks differ) and only up to its first event waiting for a retry or
-- claimed by a publisher: a run backing off takes no place in the batch and holds back
-- only its own events. One scan of the undelivered events and no join, so no plan
-- depends on fresh statistics.
WITH p AS (SELECT run_id, seq, type, message, detail, at, attempts, min(at) OVER w AS since,
    min(CASE WHEN next_attempt_at > {_now} THEN seq END) OVER w AS upto
  FROM events WHERE published_at IS NULL AND dead_at IS NULL
  WINDOW w AS (PARTITION BY run_id))
-- name: outbox_pending
{_outbox_due}
SELECT run_id, seq, type, message, detail, at, attempts FROM p
WHERE upto IS NULL OR seq < upto ORDER BY since, run_id, seq LIMIT :limit
-- name: outbox_claim
-- the batch outbox_pending reads, claimed until :now + :lease in the same statement (the
-- write lock held: no other claim interleaves), so a second publisher skips it until then.
-- RETURNING's order is SQLite's: each row carries its run's `since` to be sorted by, and
-- its run's created_at (a run id reused after a prune numbers its events from 1 again)
UPDATE events SET next_attempt_at = {_now} + :lease WHERE (run_id, seq) IN ({_outbox_due}
  SELECT run_id, seq FROM p WHERE upto IS NULL OR seq < upto
  ORDER BY since, run_id, seq LIMIT :limit)
RETURNING run_id, seq, type, message, detail, at, attempts, next_attempt_at,
  (SELECT min(x.at) FROM events x WHERE x.run_id = events.run_id AND x.published_at IS NULL
    AND x.dead_at IS NULL),
  (SELECT r.created_at FROM runs r WHERE r.id = events.run_id)
-- name: outbox_delivered
-- the events (:wids[i], :seqs[i]), in one statement
UPDATE events SET published_at = :at, attempts = attempts + 1
WHERE (run_id, seq) IN (SELECT w.value, s.value FROM json_each(:wids) w
  JOIN json_each(:seqs) s ON s.key = w.key)
-- name: outbox_failed
UPDATE events SET attempts = attempts + 1, last_error = :error, next_attempt_at = :next,
  dead_at = :dead WHERE run_id = :wid AND seq = :seq AND published_at IS NULL
-- name: outbox_release
-- claimed events a publisher did not try, handed back at once: only while still its claim
-- (:until, read back to the microsecond) and not delivered meanwhile
UPDATE events SET next_attempt_at = NULL WHERE (run_id, seq) IN (SELECT w.value, s.value
  FROM json_each(:wids) w JOIN json_each(:seqs) s ON s.key = w.key)
  AND published_at IS NULL AND dead_at IS NULL AND abs(next_attempt_at - :until) < 0.000002
-- name: outbox_dead
SELECT run_id, seq, type, message, detail, at, attempts, last_error, dead_at FROM events
WHERE dead_at IS NOT NULL ORDER BY dead_at, run_id, seq LIMIT :limit

-- name: idempotency_get
SELECT status, result, updated_at > :at - :stale FROM idempotency
WHERE command = :command AND key = :key
-- name: idempotency_done
UPDATE idempotency SET status = 'done', result = :result, updated_at = :at
WHERE command = :command AND key = :key
-- name: prunable_runs
-- with :keep, not a run with an event the outbox has yet to deliver (the App has sinks)
SELECT id FROM runs r WHERE status IN (SELECT value FROM json_each(:statuses))
  AND finished_at < :before AND NOT {_family_kept}
  ORDER BY finished_at, id LIMIT :limit
-- name: run_undelivered
SELECT 1 FROM events WHERE run_id = :id AND published_at IS NULL AND dead_at IS NULL LIMIT 1
-- name: delete_idempotency_of
DELETE FROM idempotency
WHERE CASE WHEN json_valid(result) THEN json_extract(result, '$.workflow_id') END = :id
-- name: pause_schedule
UPDATE schedules SET paused = :paused, updated_at = :at,
  fired_until = CASE WHEN paused AND NOT :paused THEN max(fired_until, :at) ELSE fired_until END
WHERE name = :name
-- name: _calls_of_ids
c.run_id IN (SELECT value FROM json_each(:ids))
-- name: _usage_from
FROM ai_calls c JOIN runs r ON r.id = c.run_id
WHERE (:any_id OR c.run_id IN (SELECT value FROM json_each(:ids)))
  AND (:workflow IS NULL OR r.workflow_name = :workflow)
  AND (:tag IS NULL OR EXISTS (SELECT 1 FROM json_each(r.tags) WHERE value = :tag))
  AND (:since IS NULL OR c.at >= :since) AND (:until IS NULL OR c.at < :until)
-- name: ai_usage_by_day
SELECT date(c.at, 'unixepoch'), {_usage_sums} {_usage_from} GROUP BY 1 ORDER BY 1
-- name: _calls_not_of_planned
-- not a call of the runs :planned (their set is built once, not scanned per call)
c.run_id NOT IN (SELECT value FROM json_each(:planned))

-- name: _run_filter
-- a `RunFilter` but its status (each left NULL matches every run)
(:workflow IS NULL OR workflow_name = :workflow) AND (:tenant IS NULL OR tenant = :tenant)
  AND (:tag IS NULL OR EXISTS (SELECT 1 FROM json_each(runs.tags) WHERE value = :tag))
  AND (:parent IS NULL OR parent_id = :parent)
  AND (:after IS NULL OR created_at >= :after) AND (:before IS NULL OR created_at < :before)
-- name: _run_page
-- newest first; the cursor is the last run shown (its time, should it be deleted meanwhile)
WHERE (:status IS NULL OR status = :status) AND {_run_filter}
  AND (:cur IS NULL OR created_at < coalesce((SELECT created_at FROM runs WHERE id = :cur), :cur_at)
    OR (created_at = coalesce((SELECT created_at FROM runs WHERE id = :cur), :cur_at) AND id > :cur))
ORDER BY created_at DESC, id LIMIT :limit
-- name: list_runs_page
SELECT {_run_cols} FROM runs {_run_page}
-- name: _run_heads
-- `_run_cols` without input, output and initial state (NULL: never read), the error and
-- state only if asked; the error also of a run that ended before `end_reason` was
-- recorded, whose end reason is read from it (`_rows._end_reason`)
id, workflow_name, workflow_version, status, NULL, NULL,
  CASE WHEN :error OR (end_reason IS NULL AND status IN {TERMINAL}) THEN error END,
  CASE WHEN :state THEN state END, priority, tags, tenant, parent_id, idempotency_key, owner,
  owner_generation, created_at, updated_at, started_at, finished_at, compute_seconds,
  cancel_requested, queue, owner_expires_at, step_rule, budget, attempt, end_reason, NULL
-- name: list_run_heads
SELECT {_run_heads} FROM runs {_run_page}
-- name: run_heads
-- the heads of the runs named (a run page's children), in no order
SELECT {_run_heads} FROM runs WHERE id IN (SELECT value FROM json_each(:ids))
-- name: run_counts
SELECT workflow_name, status, count(*) FROM runs WHERE {_run_filter}
GROUP BY workflow_name, status ORDER BY 1, 2

-- name: touch_api_token
-- at most once a minute: using a token must not cost a durable write per request
UPDATE api_tokens SET last_used_at = :at
WHERE id = :id AND (last_used_at IS NULL OR last_used_at < :at - 60)
-- name: api_idempotency_get
SELECT request_hash, status, response FROM api_idempotency WHERE key = :key
-- The numbers behind /metrics: histograms over every recorded step and ended job (a
-- prune, or a rerun forgetting steps, lowers them: Prometheus reads a counter reset). A
-- job's wait counts once it ended: a released job is due again later than its claim.
-- name: metric_step_seconds
SELECT sum(CASE WHEN d <= 0.005 THEN 1 ELSE 0 END), sum(CASE WHEN d <= 0.01 THEN 1 ELSE 0 END), sum(CASE WHEN d <= 0.025 THEN 1 ELSE 0 END), sum(CASE WHEN d <= 0.05 THEN 1 ELSE 0 END), sum(CASE WHEN d <= 0.1 THEN 1 ELSE 0 END), sum(CASE WHEN d <= 0.25 THEN 1 ELSE 0 END), sum(CASE WHEN d <= 0.5 THEN 1 ELSE 0 END), sum(CASE WHEN d <= 1 THEN 1 ELSE 0 END), sum(CASE WHEN d <= 2.5 THEN 1 ELSE 0 END), sum(CASE WHEN d <= 5 THEN 1 ELSE 0 END), sum(CASE WHEN d <= 10 THEN 1 ELSE 0 END), sum(CASE WHEN d <= 30 THEN 1 ELSE 0 END), sum(CASE WHEN d <= 60 THEN 1 ELSE 0 END), sum(CASE WHEN d <= 300 THEN 1 ELSE 0 END), sum(CASE WHEN d <= 1800 THEN 1 ELSE 0 END), count(*), COALESCE(sum(d), 0) FROM (SELECT round(completed_at - started_at, 6) AS d FROM steps WHERE status = 'completed' AND started_at IS NOT NULL AND completed_at IS NOT NULL) AS x
-- name: metric_job_wait_seconds
SELECT sum(CASE WHEN d <= 0.005 THEN 1 ELSE 0 END), sum(CASE WHEN d <= 0.01 THEN 1 ELSE 0 END), sum(CASE WHEN d <= 0.025 THEN 1 ELSE 0 END), sum(CASE WHEN d <= 0.05 THEN 1 ELSE 0 END), sum(CASE WHEN d <= 0.1 THEN 1 ELSE 0 END), sum(CASE WHEN d <= 0.25 THEN 1 ELSE 0 END), sum(CASE WHEN d <= 0.5 THEN 1 ELSE 0 END), sum(CASE WHEN d <= 1 THEN 1 ELSE 0 END), sum(CASE WHEN d <= 2.5 THEN 1 ELSE 0 END), sum(CASE WHEN d <= 5 THEN 1 ELSE 0 END), sum(CASE WHEN d <= 10 THEN 1 ELSE 0 END), sum(CASE WHEN d <= 30 THEN 1 ELSE 0 END), sum(CASE WHEN d <= 60 THEN 1 ELSE 0 END), sum(CASE WHEN d <= 300 THEN 1 ELSE 0 END), sum(CASE WHEN d <= 1800 THEN 1 ELSE 0 END), count(*), COALESCE(sum(d), 0) FROM (SELECT round(max(0, claimed_at - run_after), 6) AS d FROM jobs WHERE status IN ('done', 'failed') AND claimed_at IS NOT NULL) AS x
-- name: metric_job_run_seconds
SELECT sum(CASE WHEN d <= 0.005 THEN 1 ELSE 0 END), sum(CASE WHEN d <= 0.01 THEN 1 ELSE 0 END), sum(CASE WHEN d <= 0.025 THEN 1 ELSE 0 END), sum(CASE WHEN d <= 0.05 THEN 1 ELSE 0 END), sum(CASE WHEN d <= 0.1 THEN 1 ELSE 0 END), sum(CASE WHEN d <= 0.25 THEN 1 ELSE 0 END), sum(CASE WHEN d <= 0.5 THEN 1 ELSE 0 END), sum(CASE WHEN d <= 1 THEN 1 ELSE 0 END), sum(CASE WHEN d <= 2.5 THEN 1 ELSE 0 END), sum(CASE WHEN d <= 5 THEN 1 ELSE 0 END), sum(CASE WHEN d <= 10 THEN 1 ELSE 0 END), sum(CASE WHEN d <= 30 THEN 1 ELSE 0 END), sum(CASE WHEN d <= 60 THEN 1 ELSE 0 END), sum(CASE WHEN d <= 300 THEN 1 ELSE 0 END), sum(CASE WHEN d <= 1800 THEN 1 ELSE 0 END), count(*), COALESCE(sum(d), 0) FROM (SELECT round(updated_at - claimed_at, 6) AS d FROM jobs WHERE status = 'done' AND claimed_at IS NOT NULL) AS x
-- name: event_lock
-- (one writer at a time already: BEGIN IMMEDIATE serialises send_event and register_wait)
SELECT :name
-- name: _blob_key
-- a blob key as its prefix queries compare it: byte by byte (BINARY), as its index is built
key
-- name: get_blob
-- the row whose body `SQLiteTx.read_blob` reads (sqlite3's blobopen), not the body
SELECT rowid FROM blobs WHERE key = :key
-- name: put_blob_room
-- a blob's row with room for its body (zeroblob, the last column since migration 0023:
-- nothing allocated), which `SQLiteTx.write_blob` then writes in place (blobopen)
INSERT INTO blobs (key, body, size, created_at) VALUES (:key, zeroblob(:size), :size, :at)
ON CONFLICT (key) DO UPDATE SET body = excluded.body, size = excluded.size,
  created_at = excluded.created_at
RETURNING rowid
