DROP INDEX orders_producer;
DROP INDEX orders_key;
DROP INDEX orders_idempotency_key;
CREATE INDEX orders_rejected_key ON orders (idempotency_key) WHERE status = 'rejected';
CREATE UNIQUE INDEX orders_idempotency_key ON orders (idempotency_key) WHERE status <> 'rejected';
ALTER TABLE orders DROP COLUMN producer;
