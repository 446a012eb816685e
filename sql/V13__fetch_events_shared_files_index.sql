-- The per-phone index holds per-phone events only; events that name no phone get a small index of their own,
-- kept for one job: deleting a tenant.
--
-- Two thirds of a boot storm's events name no phone: OS79XX.TXT, SIPDefault.cnf, RINGLIST.DAT, dialplan.xml,
-- the images and the misses. In `fetch_events_phone_newest` (V11) they all had the key (tenant, NULL, -id).
-- Each new one therefore went to the leftmost leaf of that group, where a B-tree cannot append cheaply: the
-- leaf splits in half and its right half is never filled again. No read looks for them by phone. After
-- 1,000,000 storm events that index was 84 MB. Now the two indexes together are 31 MB (27 MB per-phone,
-- 4 MB shared-file; the shared-file index deduplicates its tenant keys). PostgreSQL used 31-35 CPU ticks per
-- current-firmware storm against 40-52, and 15-25% less CPU in `bench/run`'s storms (BENCHMARKS.md).
--
-- The reads (`db::fetches`: history, last seen, a tenant's last seen) compare `phone_mac` to a value, which
-- implies `phone_mac IS NOT NULL`, so they use the partial index also in generic plans (tests/it/paging.rs).
DROP INDEX fetch_events_phone_newest;
CREATE INDEX fetch_events_phone_newest ON fetch_events (tenant_id, phone_mac, (-id)) WHERE phone_mac IS NOT NULL;
CREATE INDEX fetch_events_tenant_shared ON fetch_events (tenant_id) WHERE phone_mac IS NULL;

-- Each statement's condition matches one partial index, so that deleting a small tenant never scans the
-- table (a sequential scan took 14.2 s over 30.6 M events).
CREATE OR REPLACE FUNCTION dialtone_delete_tenant_fetch_events() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM fetch_events WHERE tenant_id = OLD.id AND phone_mac IS NOT NULL;
    DELETE FROM fetch_events WHERE tenant_id = OLD.id AND phone_mac IS NULL;
    DELETE FROM phone_files_served WHERE tenant_id = OLD.id;
    RETURN OLD;
END
$$;
