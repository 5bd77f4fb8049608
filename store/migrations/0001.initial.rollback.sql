DROP TABLE attempts;
DROP TABLE order_events;
DROP TABLE orders;
