-- The HTTP API (`tether serve`): API tokens, of which only a sha256 is kept
-- (the token itself is shown once, when it is created); the answers to POSTs
-- made with an Idempotency-Key, so that a retried request gets the first
-- answer instead of acting twice; and the webhook signatures seen while they
-- are inside the tolerance window, so that a captured request cannot be
-- replayed.

CREATE TABLE api_tokens (
    id           TEXT PRIMARY KEY,
    name         TEXT,
    scope        TEXT NOT NULL,
    token_hash   TEXT NOT NULL UNIQUE,
    created_at   REAL NOT NULL,
    last_used_at REAL,
    revoked_at   REAL
);

CREATE TABLE api_idempotency (
    key          TEXT PRIMARY KEY,
    request_hash TEXT NOT NULL,
    status       INTEGER,
    response     TEXT,
    created_at   REAL NOT NULL
);
CREATE INDEX api_idempotency_created ON api_idempotency (created_at);

CREATE TABLE webhook_signatures (
    hook       TEXT NOT NULL,
    signature  TEXT NOT NULL,
    expires_at REAL NOT NULL,
    PRIMARY KEY (hook, signature)
);
CREATE INDEX webhook_signatures_expires ON webhook_signatures (expires_at);
