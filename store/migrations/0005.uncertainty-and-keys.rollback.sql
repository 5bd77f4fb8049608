DROP INDEX orders_provider_ref;
ALTER TABLE orders DROP COLUMN key_sent_at;
ALTER TABLE orders DROP COLUMN settled_through;
