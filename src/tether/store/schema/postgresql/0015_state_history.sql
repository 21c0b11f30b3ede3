-- What a replay needs to see the state a run's code saw the first time. A run's
-- `state` column holds its latest state: a resumed run read it from its first
-- line, so code reading `wf.state` before an `update_state` saw a later state than
-- it had, and took another branch. `initial_state` keeps the state the run was
-- created with (NULL: created by an older tether, for which the latest stands in).
-- A recorded value (an `update_state` snapshot) keeps the run's event number of its
-- write in `seq`, so that `for_each` items replaying their snapshots in another
-- order than they wrote them leave the state at the last one written, not at the
-- last one replayed (NULL: written by an older tether).

ALTER TABLE runs ADD COLUMN initial_state jsonb;
ALTER TABLE steps ADD COLUMN seq bigint;
