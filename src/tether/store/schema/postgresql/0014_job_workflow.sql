-- A job carries its run's workflow (name and version, as the run recorded them), so
-- a worker's claim takes, from an index, only jobs of workflows it registered: a job
-- of a workflow it does not know stays queued, untouched, for a worker that knows it,
-- where before it was claimed, handed back and claimed again, taking the worker's
-- slots and its queue's rate. Open jobs are filled in; ended ones never run again.
-- NULL: a job queued by an older tether after this migration, which any worker may
-- claim (as before). The index's COALESCE makes a run without a version an
-- equality an index can find; no workflow is named ''.

ALTER TABLE jobs ADD COLUMN workflow_name text;
ALTER TABLE jobs ADD COLUMN workflow_version text;

UPDATE jobs SET workflow_name = r.workflow_name, workflow_version = r.workflow_version
FROM runs r WHERE r.id = jobs.run_id AND jobs.status IN ('queued', 'claimed');

CREATE INDEX jobs_ready_workflow ON jobs (queue, (COALESCE(workflow_name, '')),
    (COALESCE(workflow_version, '')), priority DESC, id) WHERE status = 'queued';
