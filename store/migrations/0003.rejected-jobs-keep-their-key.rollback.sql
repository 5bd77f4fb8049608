DROP INDEX orders_rejected_key;
DROP INDEX orders_idempotency_key;
CREATE UNIQUE INDEX orders_idempotency_key ON orders (idempotency_key);
