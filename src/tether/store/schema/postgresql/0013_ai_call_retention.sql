-- A deleted run takes its AI calls with it (prompts, responses, tokens, cost),
-- as it takes its steps and events: kept, they were counted in the spend of a
-- new run given the same id, and a new call of that run collided with them and
-- went unlogged. A prompt or response stored once in ai_blobs goes when no call
-- is left that names it; these indexes let the delete ask that of each one.
CREATE INDEX ai_calls_prompt_blob ON ai_calls (prompt_blob) WHERE prompt_blob IS NOT NULL;
CREATE INDEX ai_calls_response_blob ON ai_calls (response_blob) WHERE response_blob IS NOT NULL;
