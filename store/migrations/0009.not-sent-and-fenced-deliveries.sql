-- "Not sent" is a fact the recovery can read: an attempt's sent_at is written (fenced by its claim) right before
-- its create request goes out, or by the claim's own statement when nothing is left to wait for; an attempt whose
-- worker was lost before that (waiting for a token, a rate turn, a seat) made nothing, and its order is placed
-- again instead of parked in doubt. And one try of a notification at a time: a try holds a token of its own, and
-- only the try that holds it records its result.
-- depends: 0008.follow-ups-and-card-data

ALTER TABLE attempts ADD COLUMN sent_at timestamptz;
-- Attempts made before this migration could have sent: an unfinished one counts as sent (the old rule).
UPDATE attempts SET sent_at = started_at WHERE finished_at IS NULL;

ALTER TABLE notifications ADD COLUMN claim_token uuid;
