-- The per-phone index of fetch events without the file name: it served the newest-event-per-file search
-- of `config_state`, which reads phone_files_served now (V9). What is left reads a phone's events newest
-- first (its history, `id < $cursor ORDER BY id DESC`, now without a sort) or all of them (last seen), and
-- deletes a tenant's. Every fetch of a known phone inserts into this index: measured with COPY of 200,000
-- events (one third per-device, 10,000 phones) on one backend, 1.10-1.14 s with the file name in the key,
-- 0.97-1.06 s without.
CREATE INDEX fetch_events_phone_id ON fetch_events (tenant_id, phone_mac, id DESC);
DROP INDEX fetch_events_phone;
