-- scheduled retry rounds of failed orders, and circuit breaker states as workers report them
-- depends: 0001.initial

ALTER TABLE orders ADD COLUMN retry_round integer NOT NULL DEFAULT 0;
ALTER TABLE orders ADD COLUMN round_base integer NOT NULL DEFAULT 0;  -- attempt_count when this round began
CREATE INDEX orders_failed ON orders (updated_at) WHERE status = 'failed';

CREATE TABLE provider_circuits (
    provider text NOT NULL,
    worker text NOT NULL,
    state text NOT NULL CHECK (state IN ('closed', 'open', 'half_open')),
    failures integer NOT NULL,
    open_until timestamptz,
    reason text,
    updated_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (provider, worker)
);
