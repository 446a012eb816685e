-- Fetch-event batches already stored. The writer retries a batch whose commit it could not confirm (the
-- connection died during COMMIT); the batch's id, written in the same transaction as its events, makes the
-- retry a no-op instead of a second copy. Pruned with the fetch events.
CREATE TABLE fetch_batches (
    id uuid PRIMARY KEY,
    at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX fetch_batches_at ON fetch_batches (at);
