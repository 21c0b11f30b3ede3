-- Whether the provider took the call's request, so it may have billed it: every
-- answer, and a failure after the request went out (a 200 whose body could not be
-- used, a timeout or a connection lost once it was sent). Such a call with no
-- known cost is of unknown cost in the usage totals, as in the budgets, never
-- free; a call refused (4xx, 5xx, no connection) cost nothing. Rows of an older
-- tether say 0: their failures count as before.
ALTER TABLE ai_calls ADD COLUMN billed INTEGER NOT NULL DEFAULT 0;
