-- an order belongs to the producer whose API key sent it; idempotency keys are each producer's own
-- depends: 0005.uncertainty-and-keys

ALTER TABLE orders ADD COLUMN producer text;  -- the API key's name; NULL for jobs sent through the broker
DROP INDEX orders_idempotency_key;
DROP INDEX orders_rejected_key;
CREATE UNIQUE INDEX orders_idempotency_key ON orders (coalesce(producer, ''), idempotency_key) WHERE status <> 'rejected';
CREATE INDEX orders_key ON orders (idempotency_key);
CREATE INDEX orders_producer ON orders (producer, created_at);
