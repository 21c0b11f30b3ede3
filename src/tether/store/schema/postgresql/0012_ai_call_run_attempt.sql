-- A rerun (rerun_from) forgets steps and runs them again from attempt 1: the calls
-- they then make are new calls, logged beside those the forgotten steps made (spent
-- either way). The run's attempt joins the key that writes a call once, so they no
-- longer collide with the earlier calls and vanish from the log.
ALTER TABLE ai_calls ADD COLUMN run_attempt INTEGER NOT NULL DEFAULT 1;
DROP INDEX ai_calls_attempt;
CREATE UNIQUE INDEX ai_calls_attempt ON ai_calls (run_id, run_attempt, step_key, attempt, seq);
