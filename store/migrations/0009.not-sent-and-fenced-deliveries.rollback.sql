ALTER TABLE notifications DROP COLUMN claim_token;
ALTER TABLE attempts DROP COLUMN sent_at;
