-- orders, provider attempts and status events
-- depends:

CREATE TABLE orders (
    id uuid PRIMARY KEY,
    provider text,
    status text NOT NULL CHECK (status IN ('received', 'waiting', 'queued', 'placing', 'placed', 'retrying',
                                           'failed', 'in_doubt', 'rejected', 'canceled')),
    idempotency_key text,          -- the producer's own key: the same key never makes a second order
    message_id text,               -- the intake message's id: a redelivered message makes no second order
    provider_key uuid NOT NULL,    -- sent to the provider on every attempt (Extend X-Idempotency-Key)
    request jsonb NOT NULL,        -- the validated order (card fields sealed), or the redacted invalid job
    request_hash text NOT NULL,
    errors jsonb,                  -- field errors of a rejected job: {"order.lineItems.0.plan.id": ["..."]}
    last_error jsonb,
    provider_ref text,
    provider_status text,
    response jsonb,
    attempt_count integer NOT NULL DEFAULT 0,
    due_at timestamptz,
    expected_at timestamptz,       -- when the last message sent for it should arrive; the sweep looks after that
    lease_until timestamptz,
    claim_token uuid,
    created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    placed_at timestamptz
);
CREATE UNIQUE INDEX orders_idempotency_key ON orders (idempotency_key);
CREATE UNIQUE INDEX orders_message_id ON orders (message_id);
CREATE INDEX orders_due ON orders (due_at) WHERE status IN ('waiting', 'queued', 'retrying');
CREATE INDEX orders_leases ON orders (lease_until) WHERE status = 'placing';
CREATE INDEX orders_listing ON orders (status, provider, created_at);
CREATE INDEX orders_created ON orders (created_at);

CREATE TABLE order_events (
    id bigserial PRIMARY KEY,
    order_id uuid NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    at timestamptz NOT NULL DEFAULT clock_timestamp(),
    from_status text,
    to_status text NOT NULL,
    reason text NOT NULL
);
CREATE INDEX order_events_order ON order_events (order_id, id);

CREATE TABLE attempts (
    id bigserial PRIMARY KEY,
    order_id uuid NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    number integer NOT NULL,
    idempotency_key text,
    started_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    finished_at timestamptz,
    http_status integer,
    latency_ms double precision,
    outcome text CHECK (outcome IN ('placed', 'retryable', 'permanent', 'in_doubt')),
    error jsonb,
    UNIQUE (order_id, number)
);
