-- exactly once under every answer: which attempts' doubts are settled, when the current key was first sent,
-- and the provider references already recorded (a lookup never adopts another order's)
-- depends: 0004.notifications

-- Attempts up to this number are settled: an operator checked with the provider, or the order certainly failed.
-- An attempt after it whose outcome is in_doubt leaves the order uncertain (its request may have made it).
ALTER TABLE orders ADD COLUMN settled_through integer NOT NULL DEFAULT 0;
-- When a create request first carried the current provider_key (the provider replays for a limited time).
ALTER TABLE orders ADD COLUMN key_sent_at timestamptz;
CREATE INDEX orders_provider_ref ON orders (provider, provider_ref) WHERE provider_ref IS NOT NULL;
