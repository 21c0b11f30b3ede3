-- A budget is checked before each AI call against the spend the call log
-- holds: sums over ai_calls, never a counter. These indexes hold every column
-- those sums read, so a check reads the index alone instead of visiting each
-- row of the run (or of the budget key) in the table: still one pass over the
-- run's calls, at a fraction of the cost per call. The key's index replaces
-- the plain one on budget_key.
CREATE INDEX ai_calls_run_spend
    ON ai_calls (run_id) INCLUDE (cost_micro_usd, input_tokens, output_tokens);
CREATE INDEX ai_calls_key_spend
    ON ai_calls (budget_key) INCLUDE (cost_micro_usd, input_tokens, output_tokens)
    WHERE budget_key IS NOT NULL;
DROP INDEX ai_calls_budget;
