DROP TABLE provider_circuits;
DROP INDEX orders_failed;
ALTER TABLE orders DROP COLUMN round_base;
ALTER TABLE orders DROP COLUMN retry_round;
