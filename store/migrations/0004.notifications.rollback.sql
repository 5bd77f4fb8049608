DROP TABLE notification_attempts;
DROP TABLE notifications;
ALTER TABLE orders DROP COLUMN notify;
