-- A phone's newest fetch events through an index that no other plan can stand in for.
--
-- With `id DESC` as the last key of the per-phone index (V10), `ORDER BY id DESC LIMIT n` could also be
-- answered by reading the primary key backwards and filtering on the phone. PostgreSQL chose that whenever
-- its statistics said a phone had many events: always in a prepared statement's generic plan once one
-- device made most of the table (a looping phone, a monitoring probe; n_distinct fell to 1). Every other
-- phone's history then read the table back to its events: 671 ms for 2 events among 3.9 M on a bench
-- database, and the tenant-wide last-seen of a resync (one LIMIT 1 per phone) sorted all events once per
-- phone and ran for minutes. The reads order by `-id` now, an order only this index has. Same key size and
-- the same physical order as before, so inserts cost the same.
CREATE INDEX fetch_events_phone_newest ON fetch_events (tenant_id, phone_mac, (-id));
DROP INDEX fetch_events_phone_id;
