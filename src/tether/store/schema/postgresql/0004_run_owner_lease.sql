-- A run's owner holds a claim that lapses unless the owning process renews it,
-- so a run whose owner died is recognised (and taken over) instead of staying
-- `running` forever. NULL: no live claim (legacy rows, parked or finished runs).

ALTER TABLE runs ADD COLUMN owner_expires_at timestamptz;
CREATE INDEX runs_owner_running ON runs (owner) WHERE status = 'running';
