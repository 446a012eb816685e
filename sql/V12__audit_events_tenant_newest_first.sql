-- A tenant's audit events through an index that no other plan can stand in for (as V11 for fetch events).
-- With `(tenant_id, id)`, `ORDER BY id DESC LIMIT n` of one tenant could also be read backwards along the
-- primary key, filtering on the tenant; a prepared statement's generic plan did that whenever the
-- statistics' sample held one tenant only (one large tenant's phone creates fill the log), and a small
-- tenant's audit page then read the log back to its events. The reads order by `-id` now.
CREATE INDEX audit_events_tenant_newest ON audit_events (tenant_id, (-id));
DROP INDEX audit_events_tenant;
