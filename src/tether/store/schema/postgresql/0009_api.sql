-- The HTTP API (`tether serve`): API tokens, of which only a sha256 is kept
-- (the token itself is shown once, when it is created); the answers to POSTs
-- made with an Idempotency-Key, so that a retried request gets the first
-- answer instead of acting twice; and the webhook signatures seen while they
-- are inside the tolerance window, so that a captured request cannot be
-- replayed.

CREATE TABLE api_tokens (
    id           text PRIMARY KEY,
    name         text,
    scope        text NOT NULL,
    token_hash   text NOT NULL UNIQUE,
    created_at   timestamptz NOT NULL,
    last_used_at timestamptz,
    revoked_at   timestamptz
);

CREATE TABLE api_idempotency (
    key          text PRIMARY KEY,
    request_hash text NOT NULL,
    status       integer,
    response     text,
    created_at   timestamptz NOT NULL
);
CREATE INDEX api_idempotency_created ON api_idempotency (created_at);

CREATE TABLE webhook_signatures (
    hook       text NOT NULL,
    signature  text NOT NULL,
    expires_at timestamptz NOT NULL,
    PRIMARY KEY (hook, signature)
);
CREATE INDEX webhook_signatures_expires ON webhook_signatures (expires_at);
