-- Named queries whose text is the same in both dialects (see _sql.py); a query
-- whose text differs lives in sqlite.sql and postgresql.sql instead, never here too.
-- name: run_generation
SELECT owner_generation FROM runs WHERE id = :wid
-- name: run_by_id_or_key
SELECT {_run_cols} FROM runs WHERE id = :id OR idempotency_key = :ikey
ORDER BY (id = :id) DESC LIMIT 1
-- name: get_run
SELECT {_run_cols} FROM runs WHERE id = :id
-- name: claim_job_run
-- a claimed job's run, for its worker's host (RunClaim): as claim_run, if pending or
-- running, of a workflow the host drives as recorded, not held by another transaction
-- (skipped, not waited for), nor by another live owner (a process that drives it itself)
UPDATE runs SET {_claim_set} WHERE id = :wid AND {_run_unlocked} AND status IN {JOB_RUN}
  AND {_drives} AND {_claimable} RETURNING {_run_cols}
-- name: claim_refused
SELECT status, owner, owner_expires_at, cancel_requested FROM runs WHERE id = :wid
-- name: release_run
UPDATE runs SET status = 'pending', owner_expires_at = NULL WHERE id = :wid
-- name: release_claim
UPDATE runs SET owner_expires_at = NULL WHERE id = :wid AND owner_generation = :gen
-- name: load_steps
SELECT {_step_cols} FROM steps WHERE run_id = :wid ORDER BY started_at, step_key
-- name: lock_release
UPDATE locks SET released_at = :t WHERE scope = :scope AND key = :key RETURNING {_lock_cols}
-- name: get_lock
SELECT {_lock_cols} FROM locks WHERE scope = :scope AND key = :key AND generation > 0
-- name: wait_get
SELECT {_wait_cols} FROM waitpoints WHERE run_id = :wid AND wait_key = :key
-- name: wait_set_due
UPDATE waitpoints SET due_at = :due WHERE id = :id
-- name: inbox_consume
UPDATE inbox SET consumed_by = :wait WHERE id = :id
-- name: list_waits
SELECT {_wait_cols} FROM waitpoints WHERE run_id = :wid ORDER BY {_wait_order}
-- name: next_due
SELECT min(due_at) FROM waitpoints WHERE status = 'pending' AND due_at IS NOT NULL
-- name: park_run
-- a parked run has no driver: its claim ends (a cancel with compensation is taken up at once)
UPDATE runs SET status = 'waiting', owner_expires_at = NULL,
  compute_seconds = compute_seconds + :cs WHERE id = :wid
-- name: wait_for_signal
-- the run's oldest pending wait for the signal whose timeout has not passed: one past it
-- (not yet timed out by `fire_due`) times out, as it would had the tick come first
SELECT id, wait_key FROM waitpoints WHERE run_id = :wid AND kind = 'signal' AND name = :name
  AND status = 'pending' AND (due_at IS NULL OR due_at > :at) ORDER BY {_wait_order} LIMIT 1
-- name: jobs_cancel_queued
UPDATE jobs SET status = 'cancelled', updated_at = :at WHERE run_id = :id AND status = 'queued'
-- name: waits_cancel
UPDATE waitpoints SET status = 'cancelled', resolved_at = :at
WHERE run_id = :id AND status = 'pending' RETURNING kind, name
-- name: wake_run
UPDATE runs SET status = 'pending' WHERE id = :id AND status = 'waiting' RETURNING queue
-- name: _job_run_status
-- the status of a job's run (r) as the job's close sees it: a cancelled run whose
-- compensation is still due is driven again, as a pending (woken) one is
CASE WHEN r.status = 'cancelled' AND r.cancel_requested = 'compensate' THEN 'pending'
  ELSE r.status END
-- name: enqueue_next
-- the run's next job, with the attempts the run was submitted with (its latest job's)
INSERT INTO jobs (run_id, queue, status, priority, max_attempts, concurrency_key, run_after,
  created_at, updated_at, workflow_name, workflow_version) SELECT id, queue, 'queued', priority,
  COALESCE((SELECT max_attempts FROM jobs WHERE run_id = :id ORDER BY id DESC LIMIT 1), 10),
  concurrency_key, :at, :at, :at, workflow_name, workflow_version
FROM runs WHERE id = :id AND queue IS NOT NULL ON CONFLICT DO NOTHING
-- name: insert_job
INSERT INTO jobs (run_id, queue, status, priority, max_attempts, concurrency_key, run_after,
  created_at, updated_at, workflow_name, workflow_version)
VALUES (:id, :queue, 'queued', :priority, :max, :ckey, :after, :at, :at, :wname, :wversion)
-- name: _job_done_with_run
-- a run's claimed job, done with the run's end (the run ended by its own function); an
-- ended job keeps run_after, when it was last due (its wait, in /metrics, counts from it)
status = 'done', last_error = NULL, locked_until = NULL, updated_at = :at
-- name: close_job_of_run
UPDATE jobs SET {_job_done_with_run} WHERE run_id = :wid AND status = 'claimed' RETURNING id
-- name: finish_job
-- back to the queue (its run handed back, or woken meanwhile): the attempt is not counted,
-- as max_attempts counts the workers that died, and no worker holds it (a queued job kept
-- naming the worker that handed it back); a closed one keeps the worker that did it
UPDATE jobs SET status = :status, last_error = :error, locked_until = NULL,
  worker = CASE WHEN :status = 'queued' THEN NULL ELSE worker END,
  run_after = CASE WHEN :status = 'queued' THEN :at ELSE run_after END,
  attempt = CASE WHEN :status = 'queued' AND attempt > 0 THEN attempt - 1 ELSE attempt END,
  updated_at = :at
WHERE id = :id
-- name: retry_job
-- a database failure is not the run's: its job goes back, its attempt not counted (a job
-- failed here would leave its run running with no job, for the stuck-run chore to find)
UPDATE jobs SET status = 'queued', worker = NULL, locked_until = NULL, last_error = :error,
  attempt = CASE WHEN attempt > 0 THEN attempt - 1 ELSE 0 END, run_after = :after,
  updated_at = :at
WHERE id = :id AND worker = :worker AND status = 'claimed'
-- name: set_queue
UPDATE runs SET queue = :queue WHERE id = :id
-- name: step_exists
SELECT 1 FROM steps WHERE run_id = :wid AND step_key = :key
-- name: get_step
SELECT {_step_cols} FROM steps WHERE run_id = :wid AND step_key = :key
-- name: wait_exists
SELECT 1 FROM events WHERE run_id = :wid AND type = 'wait.registered' AND message = :key
-- name: wait_keys
SELECT DISTINCT message FROM events WHERE run_id = :wid AND type = 'wait.registered'
-- name: rerun_first
-- the first start of the step (or registration of the wait) as the run records it now:
-- in the round (between two rerun_from) of its last start, not one an earlier
-- rerun_from took back
WITH l AS (SELECT MAX(seq) AS s FROM events WHERE run_id = :wid
  AND type IN ('step.started', 'wait.registered') AND message = :key),
b AS (SELECT COALESCE(MAX(e.seq), 0) AS s FROM events e, l WHERE e.run_id = :wid
  AND e.type = 'run.rerun_from' AND e.seq < l.s)
SELECT COALESCE(MIN(e.seq), 0) FROM events e, b WHERE e.run_id = :wid
  AND e.type IN ('step.started', 'wait.registered') AND e.message = :key AND e.seq > b.s
-- name: rerun_steps
DELETE FROM steps WHERE run_id = :wid AND step_key IN (SELECT message FROM events
  WHERE run_id = :wid AND type = 'step.started' AND seq >= :first)
-- name: rerun_values
-- the values the run recorded since (its state's updates, its now() and uuid(); an older
-- tether kept no place for them, seq NULL: kept, as it kept them)
DELETE FROM steps WHERE run_id = :wid AND seq >= :first
-- name: rerun_state
-- its state as of the last update it keeps (or as it was created)
UPDATE runs SET state = COALESCE((SELECT s.result FROM steps s WHERE s.run_id = :wid
  AND s.seq IS NOT NULL AND s.step_key LIKE '%tether.state%' ORDER BY s.seq DESC LIMIT 1),
  initial_state, state) WHERE id = :wid
-- name: rerun_events_taken
-- the events its waits about to be forgotten took stay taken by the run: a marker
-- each (consumed_by: the event's id), gone with the event or the run, which
-- `inbox_events_for` skips; the replay's wait asks for a new event, as for a signal
INSERT INTO inbox (kind, target, name, created_at, expires_at, consumed_by)
SELECT 'event_taken', w.run_id, w.name, :at, i.expires_at, CAST(w.inbox_id AS text)
FROM waitpoints w JOIN inbox i ON i.id = w.inbox_id WHERE w.run_id = :wid
  AND w.kind = 'event' AND w.wait_key IN (SELECT message FROM events
  WHERE run_id = :wid AND type = 'wait.registered' AND seq >= :first)
-- name: rerun_waits
-- and the waits the run's end closed (cancelled): the replay registers them anew
DELETE FROM waitpoints WHERE run_id = :wid AND (status = 'cancelled' OR wait_key IN
  (SELECT message FROM events WHERE run_id = :wid AND type = 'wait.registered' AND seq >= :first))
-- name: rerun_wait_pending
-- the wait for a child the rerun takes up again: pending, for the replay to find
UPDATE waitpoints SET status = 'pending', payload = NULL, resolved_at = NULL
WHERE run_id = :wid AND wait_key = :key
-- name: set_budget
UPDATE runs SET budget = :budget WHERE id = :wid
-- name: rerun_reset
UPDATE runs SET status = 'pending', output = NULL, finished_at = NULL, end_reason = NULL,
  attempt = attempt + 1 WHERE id = :wid
-- name: compensations_unfinished
-- the compensations a compensation_failed run tried without completing (retry_compensations)
SELECT step_key FROM steps WHERE run_id = :wid AND step_key LIKE 'compensate:%'
  AND status <> 'completed'
-- name: compensations_forget
DELETE FROM steps WHERE run_id = :wid AND step_key LIKE 'compensate:%' AND status <> 'completed'
-- name: compensations_due
-- a cancelled run's compensation due again, as cancel(compensate=True) leaves it
UPDATE runs SET status = 'cancelled', cancel_requested = 'compensate' WHERE id = :wid
-- name: outbox_replay_dead
UPDATE events SET dead_at = NULL, attempts = 0, next_attempt_at = NULL
WHERE (run_id, seq) IN (SELECT run_id, seq FROM events WHERE dead_at IS NOT NULL
  ORDER BY dead_at, run_id, seq LIMIT :limit)
-- name: idempotency_reserve
INSERT INTO idempotency (command, key, status, created_at, updated_at)
VALUES (:command, :key, 'new', :at, :at) ON CONFLICT DO NOTHING
-- name: idempotency_take
UPDATE idempotency SET status = 'in_progress', updated_at = :at
WHERE command = :command AND key = :key
-- name: idempotency_drop
DELETE FROM idempotency WHERE command = :command AND key = :key
-- name: run_children
SELECT id, status FROM runs WHERE parent_id = :id
-- name: run_parent
SELECT parent_id FROM runs WHERE id = :wid
-- name: delete_steps
DELETE FROM steps WHERE run_id = :id
-- name: delete_events
DELETE FROM events WHERE run_id = :id
-- name: delete_waits
DELETE FROM waitpoints WHERE run_id = :id
-- name: delete_jobs
DELETE FROM jobs WHERE run_id = :id
-- name: delete_heartbeats
DELETE FROM heartbeats WHERE run_id = :id
-- name: delete_locks
DELETE FROM locks WHERE run_id = :id
-- name: delete_inbox
DELETE FROM inbox WHERE target = :id
-- name: ai_blobs_of_run
SELECT prompt_blob, response_blob FROM ai_calls
WHERE run_id = :id AND (prompt_blob IS NOT NULL OR response_blob IS NOT NULL)
-- name: delete_ai_calls
DELETE FROM ai_calls WHERE run_id = :id
-- name: delete_unused_ai_blob
DELETE FROM ai_blobs WHERE digest = :digest
  AND NOT EXISTS (SELECT 1 FROM ai_calls WHERE prompt_blob = :digest)
  AND NOT EXISTS (SELECT 1 FROM ai_calls WHERE response_blob = :digest)
-- name: delete_run
DELETE FROM runs WHERE id = :id AND status IN {TERMINAL}
-- name: _schedule_cols
name, workflow_name, cron, timezone, queue, missed, paused, fired_until, created_at, updated_at
-- name: save_schedule
-- a changed definition is updated, keeping whether it is paused; how far it fired is
-- kept unless the cron or time zone changed (then it counts from the change)
INSERT INTO schedules ({_schedule_cols})
VALUES (:name, :workflow_name, :cron, :timezone, :queue, :missed, :paused, :fired_until,
  :created_at, :updated_at)
ON CONFLICT (name) DO UPDATE SET workflow_name = excluded.workflow_name, cron = excluded.cron,
  timezone = excluded.timezone, queue = excluded.queue, missed = excluded.missed,
  fired_until = CASE WHEN schedules.cron = excluded.cron AND schedules.timezone = excluded.timezone
    THEN schedules.fired_until ELSE excluded.fired_until END,
  updated_at = excluded.updated_at
-- name: schedule_by_name
SELECT {_schedule_cols} FROM schedules WHERE name = :name
-- name: list_schedules
SELECT {_schedule_cols} FROM schedules ORDER BY name
-- name: delete_schedule
DELETE FROM schedules WHERE name = :name
-- name: advance_schedule
UPDATE schedules SET fired_until = :fired, updated_at = :at
WHERE name = :name AND fired_until < :fired AND NOT paused
-- name: ai_call_attempts
-- the run's attempt and the step's, read once for all the calls of a step attempt: read
-- for each call, SQLite walked the step row's overflow pages past its result to its
-- attempts (a batch of 10,000 calls whose result row was 7 MB: 16 s, most of it here)
SELECT coalesce((SELECT attempt FROM runs WHERE id = :wid), 1),
  coalesce((SELECT attempts FROM steps WHERE run_id = :wid AND step_key = :key), 1)
-- name: insert_ai_call
-- keyed (run, its attempt, step, attempt, seq): a completion written twice writes the calls
-- once
INSERT INTO ai_calls (run_id, run_attempt, step_key, attempt, seq, call_type, provider, model,
  request_id, prompt, prompt_blob, response, response_blob, input_tokens, cached_input_tokens,
  cache_write_tokens, output_tokens, reasoning_tokens, cost_micro_usd, price_source,
  service_tier, latency_ms, at, error, budget_key, batch_id, custom_id, billed)
VALUES (:wid, :run_attempt, :key, :step_attempt, :seq, :call_type, :provider, :model,
  :request_id, :prompt, :prompt_blob, :response, :response_blob, :input_tokens,
  :cached_input_tokens, :cache_write_tokens, :output_tokens, :reasoning_tokens,
  :cost_micro_usd, :price_source, :service_tier, :latency_ms, :at, :error, :budget_key,
  :batch_id, :custom_id, :billed)
ON CONFLICT DO NOTHING
-- name: list_ai_calls
SELECT c.id, c.run_id, c.step_key, c.attempt, c.call_type, c.provider, c.model, c.request_id,
  coalesce(c.prompt, pb.body), coalesce(c.response, rb.body), c.input_tokens,
  c.cached_input_tokens, c.cache_write_tokens, c.output_tokens, c.reasoning_tokens,
  c.cost_micro_usd, c.price_source, c.service_tier, c.latency_ms, c.at, c.error, c.budget_key,
  c.batch_id, c.custom_id, c.billed
FROM ai_calls c LEFT JOIN ai_blobs pb ON pb.digest = c.prompt_blob
  LEFT JOIN ai_blobs rb ON rb.digest = c.response_blob
WHERE {_calls_of_ids} ORDER BY c.id
-- name: insert_ai_blob
INSERT INTO ai_blobs (digest, body) VALUES (:digest, :body) ON CONFLICT DO NOTHING
-- name: _spend_sums
count(*), sum(cost_micro_usd),
sum(CASE WHEN cost_micro_usd IS NULL THEN 1 ELSE 0 END),
sum(input_tokens + output_tokens)
-- name: ai_spend_run
-- (since: the start of a budget's period, else the epoch: a range of the index either way)
SELECT {_spend_sums} FROM ai_calls WHERE run_id = :wid AND at >= :since
-- name: ai_spend_key
SELECT {_spend_sums} FROM ai_calls WHERE budget_key = :bkey AND at >= :since
-- name: _spend_parts
count(*) AS n, sum(cost_micro_usd) AS usd,
sum(CASE WHEN cost_micro_usd IS NULL THEN 1 ELSE 0 END) AS unknown,
sum(input_tokens + output_tokens) AS tokens
-- name: _family_kept
-- whether a prune keeps run r: `delete_runs` skips it whole if a run it started (at any
-- depth) has not ended, or (with :keep) one of the family has an event yet to deliver; a
-- prune must not pick it (the skipped filled its batch, and the finished runs after them
-- were never deleted). Nor one whose family has a run that ended at :before or later:
-- `delete_runs` takes the children with the run, and a detached child that ended a day
-- ago went with a parent that ended 60 days ago in a 30-day prune. Nor one below another
-- run: a family goes whole, from its top, so a run's record (its children's runs, the
-- spend its budget counts with theirs) stays whole while the run is kept (a child picked
-- on its own went in one batch and left its parent for the next, or for good when the
-- prune stopped, its --status left the parent, or a sibling had not ended)
(EXISTS (WITH RECURSIVE fam(id, status, finished_at) AS (SELECT r.id, r.status, r.finished_at
  UNION SELECT c.id, c.status, c.finished_at FROM runs c JOIN fam f ON c.parent_id = f.id)
  SELECT 1 FROM fam WHERE fam.status IN {OPEN} OR fam.finished_at IS NULL
    OR fam.finished_at >= :before OR (CAST(:keep AS boolean) AND EXISTS (
    SELECT 1 FROM events e WHERE e.run_id = fam.id AND e.published_at IS NULL
    AND e.dead_at IS NULL)))
  OR EXISTS (SELECT 1 FROM runs a WHERE a.id = r.parent_id))
-- name: _run_tree
-- the run and every run it started (children, theirs, ...), by the runs_parent index
WITH RECURSIVE tree(id) AS (SELECT CAST(:wid AS text)
  UNION SELECT r.id FROM runs r JOIN tree t ON r.parent_id = t.id)
-- name: ai_spend_tree
-- a run's budget: the calls of the run and of every run it started, each run's by its
-- covering index (one probe of runs_parent for a run that started none)
{_run_tree}
SELECT {_spend_sums} FROM ai_calls WHERE run_id IN (SELECT id FROM tree) AND at >= :since
-- name: ai_spend_key_tree
-- a keyed budget of a run: the calls logged under the key (the key's covering index),
-- and those of the runs it started logged under another key or none (a child's own
-- keyed budget); the run's own calls are logged under its key
{_run_tree}
SELECT sum(n), sum(usd), sum(unknown), sum(tokens) FROM (
  SELECT {_spend_parts} FROM ai_calls WHERE budget_key = :bkey AND at >= :since
  UNION ALL
  SELECT {_spend_parts} FROM ai_calls
  WHERE run_id IN (SELECT id FROM tree WHERE id <> :wid) AND coalesce(budget_key, '') <> :bkey
    AND at >= :since
) AS parts
-- name: budget_warnings
SELECT CAST(detail AS text) FROM events WHERE run_id = :wid AND type = 'budget.warning'
-- name: _usage_sums
-- of unknown cost: a call with no known cost the provider may have billed (it took the
-- request, or told tokens); a refused call with none is neither unknown nor priced
count(*), sum(c.input_tokens), sum(c.cached_input_tokens), sum(c.cache_write_tokens),
sum(c.output_tokens), sum(c.reasoning_tokens), sum(c.cost_micro_usd),
sum(CASE WHEN c.cost_micro_usd IS NULL
  AND (c.billed OR c.error IS NULL OR c.input_tokens + c.output_tokens > 0) THEN 1 ELSE 0 END),
sum(CASE WHEN c.cost_micro_usd IS NOT NULL THEN 1 ELSE 0 END)
-- name: ai_usage_by_none
SELECT {_usage_sums} {_usage_from}
-- name: ai_usage_of_run
-- a run's usage per model (run_history): by its index alone, planned once
SELECT c.provider || ':' || c.model, {_usage_sums} FROM ai_calls c WHERE c.run_id = :wid
GROUP BY 1 ORDER BY 1
-- name: ai_usage_of_run_by_step
-- a run's usage per step and run attempt: what its pipeline stages' usage is summed from,
-- each call of a pipeline apart (`_stage_record.stage_usage`)
SELECT c.step_key, c.run_attempt, {_usage_sums} FROM ai_calls c WHERE c.run_id = :wid
GROUP BY 1, 2 ORDER BY 1, 2
-- name: ai_usage_by_model
SELECT c.provider || ':' || c.model, {_usage_sums} {_usage_from} GROUP BY 1 ORDER BY 1
-- name: ai_usage_by_workflow
SELECT r.workflow_name, {_usage_sums} {_usage_from} GROUP BY 1 ORDER BY 1
-- name: ai_usage_by_run
SELECT c.run_id, {_usage_sums} {_usage_from} GROUP BY 1 ORDER BY 1
-- name: costliest_open_runs
-- the unfinished runs that cost the most so far (`tether top`): the open runs by their
-- status, each one's calls by its own index; never a sum over every call ever made
SELECT r.id, r.workflow_name, r.status, {_usage_sums}
FROM runs r JOIN ai_calls c ON c.run_id = r.id WHERE r.status IN {OPEN}
GROUP BY r.id, r.workflow_name, r.status
ORDER BY coalesce(sum(c.cost_micro_usd), 0) DESC, count(*) DESC, r.id LIMIT :n
-- name: ai_usage_plans
-- usage by stage (`_verbs_ai._usage_by_stage`): the pipeline plans of the runs with calls
-- in the filter (the pipeline's name, the plan), each run's oldest first (a probe of the
-- events' key per run)
SELECT e.run_id, e.message, CAST(e.detail AS text) FROM events e
WHERE e.type = 'pipeline.planned' AND e.run_id IN (SELECT c.run_id {_usage_from})
ORDER BY e.run_id, e.seq
-- name: ai_usage_of_runs_by_step
-- usage by stage: the usage per step and run attempt of those runs (:ids) in the filter
SELECT c.run_id, c.step_key, c.run_attempt, {_usage_sums} {_usage_from} GROUP BY 1, 2, 3
-- name: stage_starts_of_runs
-- usage by stage: the completed stage start steps of those runs (:ids), each recording
-- the run attempt its stage started in ('<scope>stage:<id>.start<items>')
SELECT c.run_id, c.step_key, CAST(c.result AS text) FROM steps c
WHERE {_calls_of_ids} AND c.status = 'completed' AND c.step_key LIKE '%stage:%.start%'
-- name: ai_usage_not_of_runs
-- usage by stage: the calls in the filter of every other run, none of them in a stage
SELECT {_usage_sums} {_usage_from} AND {_calls_not_of_planned}
-- name: child_run_ids
SELECT id FROM runs WHERE parent_id = :wid ORDER BY created_at, id
-- name: list_blobs
-- the keys starting with a prefix: those from :lo up to (not including) :hi, compared
-- byte by byte ({_blob_key}): a range of the key's index, not a test of every row
SELECT key, size FROM blobs WHERE {_blob_key} >= :lo AND {_blob_key} < :hi
ORDER BY {_blob_key}
-- name: delete_blobs
DELETE FROM blobs WHERE {_blob_key} >= :lo AND {_blob_key} < :hi
-- name: list_all_blobs
SELECT key, size FROM blobs ORDER BY {_blob_key}
-- name: delete_all_blobs
DELETE FROM blobs
-- name: delete_blob
DELETE FROM blobs WHERE key = :key
-- name: jobs_by_queue_status
SELECT queue, status, count(*) FROM jobs GROUP BY queue, status ORDER BY queue, status
-- name: _token_cols
id, name, scope, token_hash, created_at, last_used_at, revoked_at
-- name: insert_api_token
INSERT INTO api_tokens (id, name, scope, token_hash, created_at)
VALUES (:id, :name, :scope, :token_hash, :created_at)
-- name: list_api_tokens
SELECT {_token_cols} FROM api_tokens ORDER BY created_at, id
-- name: api_token_by_hash
SELECT {_token_cols} FROM api_tokens WHERE token_hash = :hash AND revoked_at IS NULL
-- name: revoke_api_token
UPDATE api_tokens SET revoked_at = :at WHERE (id = :id OR (:by_name AND name = :id))
  AND revoked_at IS NULL
-- name: count_api_tokens
SELECT count(*) FROM api_tokens WHERE revoked_at IS NULL
-- name: api_idempotency_expire
DELETE FROM api_idempotency WHERE created_at < :before
-- name: api_idempotency_reserve
INSERT INTO api_idempotency (key, request_hash, created_at) VALUES (:key, :hash, :at)
ON CONFLICT DO NOTHING
-- name: api_idempotency_take
-- a request that never finished (its server died) gives its key up after a while
UPDATE api_idempotency SET request_hash = :hash, created_at = :at
WHERE key = :key AND status IS NULL AND created_at < :stale_before
-- name: api_idempotency_finish
UPDATE api_idempotency SET status = :status, response = :response WHERE key = :key
-- name: api_idempotency_release
DELETE FROM api_idempotency WHERE key = :key AND status IS NULL
-- name: webhook_signatures_expire
DELETE FROM webhook_signatures WHERE expires_at < :at
-- name: remember_webhook_signature
INSERT INTO webhook_signatures (hook, signature, expires_at) VALUES (:hook, :sig, :expires)
ON CONFLICT DO NOTHING
-- name: forget_webhook_signature
DELETE FROM webhook_signatures WHERE hook = :hook AND signature = :sig
-- name: metric_queues
SELECT queue, sum(CASE WHEN status = 'queued' THEN 1 ELSE 0 END), sum(CASE WHEN status = 'claimed' THEN 1 ELSE 0 END), min(CASE WHEN status = 'queued' THEN run_after END) FROM jobs GROUP BY queue ORDER BY queue
-- name: waits_due_runs
-- the runs with a due wait, to lock (`runs_lock`) before `waits_due` writes their waits
SELECT DISTINCT run_id FROM waitpoints WHERE status = 'pending' AND due_at IS NOT NULL
  AND due_at <= {_now} ORDER BY run_id
-- name: waits_due
UPDATE waitpoints SET status = CASE kind WHEN 'timer' THEN 'resolved' ELSE 'timed_out' END,
  resolved_at = :at WHERE status = 'pending' AND due_at IS NOT NULL AND due_at <= {_now}
  AND run_id {_in_ids} RETURNING run_id, wait_key, status
-- name: event_wait_runs
-- the runs waiting for an event of this type, to lock before their waits
SELECT DISTINCT run_id FROM waitpoints WHERE kind = 'event' AND name = :name
  AND status = 'pending' ORDER BY run_id
-- name: inbox_expire
DELETE FROM inbox WHERE expires_at <= {_now}
-- name: release_job
UPDATE jobs SET status = 'queued', worker = NULL, locked_until = NULL,
  attempt = CASE WHEN attempt > 0 THEN attempt - 1 ELSE 0 END, run_after = :after,
  updated_at = :at
WHERE id = :id AND worker = :worker AND status = 'claimed'
-- name: run_queued_job
-- the run's queued job, if it has one
SELECT {_job_cols} FROM jobs WHERE run_id = :wid AND status = 'queued' LIMIT 1
-- name: key_holder
-- the claimed job holding concurrency key :key, if one does
SELECT {_job_cols} FROM jobs WHERE concurrency_key = :key AND status = 'claimed' LIMIT 1
-- name: reap_jobs
UPDATE jobs SET status = CASE WHEN attempt >= max_attempts THEN 'failed' ELSE 'queued' END,
  last_error = 'lease expired (worker ' || COALESCE(worker, '?') || ' stopped renewing)',
  worker = NULL, locked_until = NULL,
  run_after = CASE WHEN attempt >= max_attempts THEN run_after ELSE :at END, updated_at = :at
WHERE status = 'claimed' AND locked_until <= {_now} RETURNING run_id, status, last_error
-- name: wait_owner
-- the run whose waitpoint has this id (a token's id is its waitpoint's), of any kind
SELECT run_id FROM waitpoints WHERE id = :id
