-- What each phone last got of each of its per-device files: one row per (tenant, phone, file name),
-- upserted by the fetch-event writer in the same transaction as the batch's events
-- (db::fetches::insert_batch). `config_state` (the API's GET of a phone, and the phone list's filter)
-- reads it by primary key instead of finding the newest served event per file in the whole fetch
-- history, which read every event the phone ever fetched: pgbench on the GET statement, 8 clients,
-- 15,300 TPS with that history part against 31,300 without it, and it grew with each phone's history.
--
-- Kept beyond the fetch-history retention while the phone exists in the tenant (a phone that last fetched
-- two months ago still has that file: it is `outdated` or `current`, not `never_fetched`); rows of phones
-- no longer in the tenant go with the retention (db::maintenance::prune), and all of a tenant's rows go
-- with the tenant. A copy with the content already stored is not written again, so `at` is when the phone
-- first got what it has now. Only `sha256` and `at` change on an update and neither is indexed: a phone
-- that gets new content is a HOT update in place; the fillfactor leaves room on each page for it.
CREATE TABLE phone_files_served (
    tenant_id uuid NOT NULL,
    phone_mac text NOT NULL,
    file_name text NOT NULL,
    sha256    bytea NOT NULL,
    at        timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, phone_mac, file_name)
) WITH (fillfactor = 80);

INSERT INTO phone_files_served (tenant_id, phone_mac, file_name, sha256, at)
SELECT DISTINCT ON (tenant_id, phone_mac, file_name) tenant_id, phone_mac, file_name, sha256, at
FROM fetch_events
WHERE phone_mac IS NOT NULL AND outcome = 'served' AND sha256 IS NOT NULL
ORDER BY tenant_id, phone_mac, file_name, id DESC;

CREATE OR REPLACE FUNCTION dialtone_delete_tenant_fetch_events() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM fetch_events WHERE tenant_id = OLD.id;
    DELETE FROM phone_files_served WHERE tenant_id = OLD.id;
    RETURN OLD;
END
$$;
