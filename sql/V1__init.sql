-- dialtone schema, version 1: tenants, networks, phones, lines, audit events, and the change sequence.
--
-- Every row that the provisioning snapshot depends on carries `revision`, drawn from the global
-- `change_seq` on insert and on every update (trigger), so "everything changed since N" is a range scan.
-- Deletions leave a row in `tombstones` with their own revision. Every statement that changes such a
-- table sends one NOTIFY on channel `dialtone_changes` (identical payloads fold into one per transaction).

CREATE EXTENSION IF NOT EXISTS btree_gist;

CREATE SEQUENCE change_seq;

CREATE FUNCTION dialtone_bump_revision() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.revision := nextval('change_seq');
    RETURN NEW;
END $$;

CREATE FUNCTION dialtone_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('dialtone_changes', '');
    RETURN NULL;
END $$;

CREATE TABLE tombstones (
    revision bigint PRIMARY KEY DEFAULT nextval('change_seq'),
    kind     text NOT NULL,
    key      text NOT NULL,
    at       timestamptz NOT NULL DEFAULT now()
);

CREATE FUNCTION dialtone_tombstone() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO tombstones (kind, key) VALUES (TG_ARGV[0], to_jsonb(OLD) ->> TG_ARGV[1]);
    RETURN OLD;
END $$;

CREATE TABLE tenants (
    id         uuid PRIMARY KEY,
    slug       text NOT NULL,
    name       text NOT NULL CHECK (char_length(name) BETWEEN 1 AND 200),
    enabled    boolean NOT NULL DEFAULT true,
    settings   jsonb NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    revision   bigint NOT NULL DEFAULT nextval('change_seq'),
    CONSTRAINT tenants_slug_key UNIQUE (slug),
    CONSTRAINT tenants_slug_format CHECK (slug ~ '^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$')
);

CREATE TABLE networks (
    id          uuid PRIMARY KEY,
    tenant_id   uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    cidr        cidr NOT NULL,
    description text NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now(),
    revision    bigint NOT NULL DEFAULT nextval('change_seq'),
    CONSTRAINT networks_tenant_cidr_key UNIQUE (tenant_id, cidr),
    -- Networks of different tenants never overlap (identical, nested or partial); nesting inside one
    -- tenant is allowed. `inet_ops` must be named: btree_gist's cidr opclass would otherwise be chosen.
    CONSTRAINT networks_no_cross_tenant_overlap
        EXCLUDE USING gist (tenant_id WITH <>, cidr inet_ops WITH &&)
);

-- A phone's MAC is its key: one owner across all tenants.
CREATE TABLE phones (
    mac         text PRIMARY KEY CHECK (mac ~ '^[0-9A-F]{12}$'),
    id          uuid NOT NULL UNIQUE,
    tenant_id   uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    model       text NOT NULL,
    label       text NOT NULL DEFAULT '',
    description text NOT NULL DEFAULT '',
    enabled     boolean NOT NULL DEFAULT true,
    settings    jsonb NOT NULL DEFAULT '{}',
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    revision    bigint NOT NULL DEFAULT nextval('change_seq')
);
CREATE INDEX phones_tenant_mac ON phones (tenant_id, mac);
CREATE INDEX phones_revision ON phones (revision);

CREATE TABLE phone_lines (
    phone_mac    text NOT NULL REFERENCES phones (mac) ON DELETE CASCADE,
    position     smallint NOT NULL CHECK (position BETWEEN 1 AND 8),
    number       text NOT NULL,
    auth_name    text NOT NULL,
    password     text,
    display_name text,
    short_label  text,
    PRIMARY KEY (phone_mac, position)
);

CREATE TABLE audit_events (
    id          bigserial PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT now(),
    subject     text NOT NULL,
    role        text NOT NULL,
    tenant_id   uuid,
    tenant_slug text,
    action      text NOT NULL,
    target      text NOT NULL,
    detail      jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_events_tenant ON audit_events (tenant_id, id);

CREATE TRIGGER tenants_revision BEFORE UPDATE ON tenants FOR EACH ROW EXECUTE FUNCTION dialtone_bump_revision();
CREATE TRIGGER networks_revision BEFORE UPDATE ON networks FOR EACH ROW EXECUTE FUNCTION dialtone_bump_revision();
CREATE TRIGGER phones_revision BEFORE UPDATE ON phones FOR EACH ROW EXECUTE FUNCTION dialtone_bump_revision();

CREATE TRIGGER tenants_tombstone AFTER DELETE ON tenants FOR EACH ROW EXECUTE FUNCTION dialtone_tombstone('tenant', 'id');
CREATE TRIGGER networks_tombstone AFTER DELETE ON networks FOR EACH ROW EXECUTE FUNCTION dialtone_tombstone('network', 'id');
CREATE TRIGGER phones_tombstone AFTER DELETE ON phones FOR EACH ROW EXECUTE FUNCTION dialtone_tombstone('phone', 'mac');

CREATE TRIGGER tenants_notify AFTER INSERT OR UPDATE OR DELETE ON tenants FOR EACH STATEMENT EXECUTE FUNCTION dialtone_notify();
CREATE TRIGGER networks_notify AFTER INSERT OR UPDATE OR DELETE ON networks FOR EACH STATEMENT EXECUTE FUNCTION dialtone_notify();
CREATE TRIGGER phones_notify AFTER INSERT OR UPDATE OR DELETE ON phones FOR EACH STATEMENT EXECUTE FUNCTION dialtone_notify();
CREATE TRIGGER phone_lines_notify AFTER INSERT OR UPDATE OR DELETE ON phone_lines FOR EACH STATEMENT EXECUTE FUNCTION dialtone_notify();
