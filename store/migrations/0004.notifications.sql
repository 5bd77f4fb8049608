-- outcome notifications to the checkout system (signed webhooks or Celery tasks), and each delivery attempt
-- depends: 0003.rejected-jobs-keep-their-key

ALTER TABLE orders ADD COLUMN notify jsonb;  -- {"url": "..."} or {"task": "...", "queue": "..."}

CREATE TABLE notifications (
    id bigserial PRIMARY KEY,
    event_id uuid NOT NULL UNIQUE,
    order_id uuid NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    target jsonb NOT NULL,
    body jsonb NOT NULL,
    status text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'expired')),
    attempts integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    deadline timestamptz NOT NULL,
    created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    delivered_at timestamptz
);
CREATE INDEX notifications_due ON notifications (next_attempt_at) WHERE status = 'pending';
CREATE INDEX notifications_order ON notifications (order_id, id);

CREATE TABLE notification_attempts (
    id bigserial PRIMARY KEY,
    notification_id bigint NOT NULL REFERENCES notifications (id) ON DELETE CASCADE,
    at timestamptz NOT NULL DEFAULT clock_timestamp(),
    http_status integer,
    latency_ms double precision,
    error text
);
CREATE INDEX notification_attempts_notification ON notification_attempts (notification_id, id);
