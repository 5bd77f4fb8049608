DROP INDEX orders_waiting_due;
DROP INDEX orders_round_due;
DROP INDEX orders_in_doubt;
ALTER TABLE notifications DROP COLUMN swept_at;
DROP INDEX orders_sealed_card;
ALTER TABLE orders DROP COLUMN sealed_card;
DROP INDEX orders_follow_ups;
