-- dialtone schema, version 2: stored files (content-addressed blobs), fetch events, discovered devices.

-- One row per distinct content; files point at it by SHA-256, so identical uploads are stored once.
CREATE TABLE blobs (
    sha256  bytea PRIMARY KEY CHECK (length(sha256) = 32),
    size    bigint NOT NULL CHECK (size >= 0),
    content bytea NOT NULL
);

-- A name visible to phones. tenant_id NULL: a global file (platform admin); otherwise a tenant file that
-- shadows a global file of the same name for that tenant.
CREATE TABLE files (
    id         uuid PRIMARY KEY,
    tenant_id  uuid REFERENCES tenants (id) ON DELETE CASCADE,
    name       text NOT NULL CHECK (name ~ '^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$'),
    sha256     bytea NOT NULL REFERENCES blobs (sha256),
    size       bigint NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    revision   bigint NOT NULL DEFAULT nextval('change_seq'),
    CONSTRAINT files_tenant_name_key UNIQUE NULLS NOT DISTINCT (tenant_id, name)
);
CREATE INDEX files_sha256 ON files (sha256);

CREATE TRIGGER files_revision BEFORE UPDATE ON files FOR EACH ROW EXECUTE FUNCTION dialtone_bump_revision();
CREATE TRIGGER files_tombstone AFTER DELETE ON files FOR EACH ROW EXECUTE FUNCTION dialtone_tombstone('file', 'id');
CREATE TRIGGER files_notify AFTER INSERT OR UPDATE OR DELETE ON files FOR EACH STATEMENT EXECUTE FUNCTION dialtone_notify();

-- One row per provisioning request that reached a tenant (requests from no tenant's network are only counted).
CREATE TABLE fetch_events (
    id          bigserial PRIMARY KEY,
    at          timestamptz NOT NULL,
    tenant_id   uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    protocol    text NOT NULL CHECK (protocol IN ('tftp', 'http')),
    source      inet NOT NULL,
    source_port integer NOT NULL,
    file_name   text NOT NULL,
    phone_mac   text,
    outcome     text NOT NULL CHECK (outcome IN ('served', 'not_found', 'refused', 'aborted')),
    bytes       bigint NOT NULL,
    duration_us bigint NOT NULL,
    sha256      bytea
);
CREATE INDEX fetch_events_phone ON fetch_events (tenant_id, phone_mac, file_name, id DESC);
CREATE INDEX fetch_events_tenant ON fetch_events (tenant_id, id DESC);

-- MACs asked for from a tenant's networks that have no phone yet.
CREATE TABLE discovered_devices (
    tenant_id   uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    mac         text NOT NULL CHECK (mac ~ '^[0-9A-F]{12}$'),
    first_seen  timestamptz NOT NULL,
    last_seen   timestamptz NOT NULL,
    source      inet NOT NULL,
    files       text[] NOT NULL DEFAULT '{}',
    model_guess text,
    requests    bigint NOT NULL DEFAULT 1,
    PRIMARY KEY (tenant_id, mac)
);
