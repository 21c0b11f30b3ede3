-- A budget may count a period (a day, a month): the spend since its start. The
-- spend indexes gain the call's time after the run or the key, so a check
-- reads the calls of the period as one range of the index (and a budget with
-- no period, every call of the run or the key, as before).
CREATE INDEX ai_calls_run_spend_at
    ON ai_calls (run_id, at) INCLUDE (cost_micro_usd, input_tokens, output_tokens);
CREATE INDEX ai_calls_key_spend_at
    ON ai_calls (budget_key, at) INCLUDE (cost_micro_usd, input_tokens, output_tokens)
    WHERE budget_key IS NOT NULL;
DROP INDEX ai_calls_run_spend;
DROP INDEX ai_calls_key_spend;
