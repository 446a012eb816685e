-- dialtone schema, version 5: per-tenant template overrides. A row replaces the built-in renderer of one
-- rendered file (`file` is the template id: `SIPDefault.cnf`, `SIPMAC.cnf`, `SEPMAC.cnf.xml`, …) for the
-- tenant's phones. The snapshot reads the table whole on every load and compiles the templates once.

CREATE TABLE tenant_templates (
    tenant_id  uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    file       text NOT NULL CHECK (file ~ '^[A-Za-z0-9._-]{1,64}$'),
    body       text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    revision   bigint NOT NULL DEFAULT nextval('change_seq'),
    txid       xid8 NOT NULL DEFAULT pg_current_xact_id(),
    PRIMARY KEY (tenant_id, file)
);

CREATE TRIGGER tenant_templates_revision BEFORE UPDATE ON tenant_templates FOR EACH ROW EXECUTE FUNCTION dialtone_bump_revision();
CREATE TRIGGER tenant_templates_tombstone AFTER DELETE ON tenant_templates FOR EACH ROW EXECUTE FUNCTION dialtone_tombstone('template', 'file');
CREATE TRIGGER tenant_templates_notify AFTER INSERT OR UPDATE OR DELETE ON tenant_templates FOR EACH STATEMENT EXECUTE FUNCTION dialtone_notify();
