-- Fetch events are the one table written on every provisioning request (tens of thousands of rows a
-- second in a boot storm). The foreign key to tenants cost a trigger and an index probe per row; it is
-- replaced by one KEY SHARE lock per batch on the batch's tenants (db::fetches::insert_batch, so a tenant
-- cannot be deleted under a batch) and a trigger that deletes a deleted tenant's events, as the cascade did.
ALTER TABLE fetch_events DROP CONSTRAINT fetch_events_tenant_id_fkey;

-- No query reads fetch events by tenant alone (they are read per phone, through fetch_events_phone, and
-- pruned by id), and its descending id put every new row on the leftmost leaf of the tenant's range,
-- the one place a B-tree cannot append cheaply: two thirds of a COPY's time was index insertion.
DROP INDEX fetch_events_tenant;

CREATE FUNCTION dialtone_delete_tenant_fetch_events() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM fetch_events WHERE tenant_id = OLD.id;
    RETURN OLD;
END
$$;

CREATE TRIGGER tenants_delete_fetch_events AFTER DELETE ON tenants
    FOR EACH ROW EXECUTE FUNCTION dialtone_delete_tenant_fetch_events();
