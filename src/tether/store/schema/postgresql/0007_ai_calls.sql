-- The AI call log: one row per model call, written in the transaction that
-- records the step it ran in (or its failed attempt). Totals are queries over
-- it, never counters. Tokens: input is the total input (cache reads and
-- writes are parts of it); output includes reasoning. A NULL cost means no
-- price was known, never 0. Large prompts and responses live in ai_blobs,
-- stored once per content digest.

CREATE TABLE ai_calls (
    id                  bigserial PRIMARY KEY,
    run_id              text NOT NULL,
    step_key            text NOT NULL,
    attempt             integer NOT NULL,
    seq                 integer NOT NULL,
    call_type           text NOT NULL,
    provider            text NOT NULL,
    model               text NOT NULL,
    request_id          text,
    prompt              text,
    prompt_blob         text,
    response            text,
    response_blob       text,
    input_tokens        integer NOT NULL DEFAULT 0,
    cached_input_tokens integer NOT NULL DEFAULT 0,
    cache_write_tokens  integer NOT NULL DEFAULT 0,
    output_tokens       integer NOT NULL DEFAULT 0,
    reasoning_tokens    integer NOT NULL DEFAULT 0,
    cost_micro_usd      bigint,
    price_source        text,
    service_tier        text,
    latency_ms          integer NOT NULL DEFAULT 0,
    at                  timestamptz NOT NULL,
    error               text,
    budget_key          text,
    batch_id            text,
    custom_id           text
);
CREATE UNIQUE INDEX ai_calls_attempt ON ai_calls (run_id, step_key, attempt, seq);
CREATE UNIQUE INDEX ai_calls_batch_item ON ai_calls (batch_id, custom_id)
    WHERE batch_id IS NOT NULL AND custom_id IS NOT NULL;
CREATE INDEX ai_calls_budget ON ai_calls (budget_key) WHERE budget_key IS NOT NULL;
CREATE INDEX ai_calls_at ON ai_calls (at);

CREATE TABLE ai_blobs (
    digest text PRIMARY KEY,
    body   text NOT NULL
);

-- A run's own AI budget (JSON), when it was started with one.
ALTER TABLE runs ADD COLUMN budget text;
