-- a rejected job keeps its idempotency key for lookups but does not use it up: the corrected job may reuse it
-- depends: 0002.retries-and-circuits

DROP INDEX orders_idempotency_key;
CREATE UNIQUE INDEX orders_idempotency_key ON orders (idempotency_key) WHERE status <> 'rejected';
CREATE INDEX orders_rejected_key ON orders (idempotency_key) WHERE status = 'rejected';
