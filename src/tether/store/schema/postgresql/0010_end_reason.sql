-- Why a run ended, as a column of its own: completed, failed, timed_out or
-- cancelled (NULL while it has not ended). The status says what became of the
-- run; a cancelled or failed run that ran compensations ends compensated or
-- compensation_failed, and until now only the text of its error told which
-- (a recorded {"type": "Cancelled"}). That text is read here, once, to fill
-- in the runs that ended before this column existed.

ALTER TABLE runs ADD COLUMN end_reason text
    CHECK (end_reason IN ('completed', 'failed', 'timed_out', 'cancelled'));

UPDATE runs SET end_reason = CASE
    WHEN status = 'completed' THEN 'completed'
    WHEN status = 'cancelled' THEN 'cancelled'
    WHEN error ->> 'type' = 'Cancelled' THEN 'cancelled'
    WHEN error ->> 'type' = 'WorkflowTimeoutError' THEN 'timed_out'
    ELSE 'failed'
END
WHERE status IN ('completed', 'failed', 'cancelled', 'compensated', 'compensation_failed');
