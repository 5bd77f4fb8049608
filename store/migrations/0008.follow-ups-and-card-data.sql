-- The follow-up's orders (placed Adobe orders whose status may still change), least recently read first; and the
-- orders that hold sealed card data, by a flag set when the order is recorded and cleared when its card data is
-- erased (never a text match over whole orders, which a customer named "$sealed" defeated); and when the
-- notify sweep last sent a delivery message.
-- depends: 0007.maintained-totals

CREATE INDEX orders_follow_ups ON orders (updated_at)
    WHERE status = 'placed' AND provider = 'adobe_vip' AND provider_status IS DISTINCT FROM '1000';

ALTER TABLE orders ADD COLUMN sealed_card boolean NOT NULL DEFAULT false;
UPDATE orders SET sealed_card = true WHERE jsonb_path_exists(request, 'strict $.**."$sealed" ? (@.type() == "string")');
CREATE INDEX orders_sealed_card ON orders (id) WHERE sealed_card;

-- When the notify sweep last sent a delivery message for a notification (none again until it is taken or late).
ALTER TABLE notifications ADD COLUMN swept_at timestamptz;

-- `status`'s latest in-doubt orders (the latest failed ones have orders_failed).
CREATE INDEX orders_in_doubt ON orders (updated_at) WHERE status = 'in_doubt';

-- The retry rounds' candidates: failed orders whose last error was retryable, by round then age (the orders whose
-- rounds are spent, which pile up, sit apart at the end of each round's range).
CREATE INDEX orders_round_due ON orders (retry_round, updated_at)
    WHERE status = 'failed' AND last_error->>'kind' = 'retryable';

-- /metrics' oldest waiting order: the first entry, not the queued and retrying ones due before it.
CREATE INDEX orders_waiting_due ON orders (due_at) WHERE status = 'waiting';
