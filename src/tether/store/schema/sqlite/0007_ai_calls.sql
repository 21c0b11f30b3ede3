-- The AI call log: one row per model call, written in the transaction that
-- records the step it ran in (or its failed attempt). Totals are queries over
-- it, never counters. Tokens: input is the total input (cache reads and
-- writes are parts of it); output includes reasoning. A NULL cost means no
-- price was known, never 0. Large prompts and responses live in ai_blobs,
-- stored once per content digest.

CREATE TABLE ai_calls (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id              TEXT NOT NULL,
    step_key            TEXT NOT NULL,
    attempt             INTEGER NOT NULL,
    seq                 INTEGER NOT NULL,
    call_type           TEXT NOT NULL,
    provider            TEXT NOT NULL,
    model               TEXT NOT NULL,
    request_id          TEXT,
    prompt              TEXT,
    prompt_blob         TEXT,
    response            TEXT,
    response_blob       TEXT,
    input_tokens        INTEGER NOT NULL DEFAULT 0,
    cached_input_tokens INTEGER NOT NULL DEFAULT 0,
    cache_write_tokens  INTEGER NOT NULL DEFAULT 0,
    output_tokens       INTEGER NOT NULL DEFAULT 0,
    reasoning_tokens    INTEGER NOT NULL DEFAULT 0,
    cost_micro_usd      INTEGER,
    price_source        TEXT,
    service_tier        TEXT,
    latency_ms          INTEGER NOT NULL DEFAULT 0,
    at                  REAL NOT NULL,
    error               TEXT,
    budget_key          TEXT,
    batch_id            TEXT,
    custom_id           TEXT
);
CREATE UNIQUE INDEX ai_calls_attempt ON ai_calls (run_id, step_key, attempt, seq);
CREATE UNIQUE INDEX ai_calls_batch_item ON ai_calls (batch_id, custom_id)
    WHERE batch_id IS NOT NULL AND custom_id IS NOT NULL;
CREATE INDEX ai_calls_budget ON ai_calls (budget_key) WHERE budget_key IS NOT NULL;
CREATE INDEX ai_calls_at ON ai_calls (at);

CREATE TABLE ai_blobs (
    digest TEXT PRIMARY KEY,
    body   TEXT NOT NULL
);

-- A run's own AI budget (JSON), when it was started with one.
ALTER TABLE runs ADD COLUMN budget TEXT;
