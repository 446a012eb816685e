-- Fetch events are stored in pages: one row per (tenant, phone) of each batch the writer stores, that phone's
-- events of the batch as arrays, in the order they ended (db::fetches::insert_batch). Events that name no
-- phone (OS79XX.TXT, SIPDefault.cnf, RINGLIST.DAT, dial plans, images, misses) share one page per tenant
-- and batch.
--
-- Why: every event was a row, and a row with its primary-key and per-phone index entries cost PostgreSQL
-- 4-6 µs of CPU and ~350 B of WAL (BENCHMARKS.md). That is the database's whole share of a boot storm, and
-- it bounded how many requests a second dialtone could record: one device asking 150,000 times a second
-- over HTTP (`wrk`, keep-alive) outran the writer and events were dropped. A page costs one row and its
-- index entries for all of its events. Measured (`bench/run --only small,storm,http`, old and new binary
-- alternating, two runs each, PostgreSQL CPU an event): one phone over HTTP, keep-alive 4.0-4.1 -> 1.1 µs,
-- `Connection: close` 5.8-6.1 -> 1.7-1.8 µs; 10,000-phone boot storms 6-7 -> 3-4 µs; WAL 350 -> 8-15 B an
-- event; 4.1 M events in 32 MB. A batch in which no phone asks twice gains nothing: a page per event,
-- whose arrays cost ~1 µs more than a row (10,000 phones each fetching its own file: 6 -> 7 µs).
--
-- Each event keeps its own id: `first_id + i - 1` for the page's i-th event. A page's first id is
-- `nextval * 65536`, so the pages of concurrent writers never overlap and a phone's ids grow with time. A
-- page holds at most 65,536 events (the writer's batches are smaller).
--
-- `fetch_events` stays, as a view with one row per event (for ad-hoc SQL; inserts into it become pages of
-- one event). dialtone reads and deletes the pages.
CREATE SEQUENCE fetch_event_pages_seq;
SELECT setval('fetch_event_pages_seq', (SELECT coalesce(max(id), 0) FROM fetch_events) / 65536 + 1, false);

CREATE TABLE fetch_event_pages (
    first_id    bigint PRIMARY KEY DEFAULT nextval('fetch_event_pages_seq') * 65536,
    tenant_id   uuid NOT NULL,
    phone_mac   text,
    n           integer NOT NULL CHECK (n BETWEEN 1 AND 65536),
    -- The newest `at` of the page's events: retention deletes a page when its newest event is past it.
    last_at     timestamptz NOT NULL,
    at          timestamptz[] NOT NULL,
    protocol    text[] NOT NULL,
    source      inet[] NOT NULL,
    source_port integer[] NOT NULL,
    file_name   text[] NOT NULL,
    outcome     text[] NOT NULL,
    bytes       bigint[] NOT NULL,
    duration_us bigint[] NOT NULL,
    sha256      bytea[] NOT NULL
);
ALTER SEQUENCE fetch_event_pages_seq OWNED BY fetch_event_pages.first_id;

-- A page of thousands of events is stored out of line; lz4 compresses it at a fraction of the default
-- pglz's CPU (pglz was a third of PostgreSQL's time an event here). Only where the server has lz4.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_settings WHERE name = 'default_toast_compression' AND 'lz4' = ANY (enumvals)) THEN
        ALTER TABLE fetch_event_pages
            ALTER COLUMN at SET COMPRESSION lz4, ALTER COLUMN protocol SET COMPRESSION lz4,
            ALTER COLUMN source SET COMPRESSION lz4, ALTER COLUMN source_port SET COMPRESSION lz4,
            ALTER COLUMN file_name SET COMPRESSION lz4, ALTER COLUMN outcome SET COMPRESSION lz4,
            ALTER COLUMN bytes SET COMPRESSION lz4, ALTER COLUMN duration_us SET COMPRESSION lz4,
            ALTER COLUMN sha256 SET COMPRESSION lz4;
    END IF;
END
$$;

-- The same two partial indexes as the event rows had (V13): a phone's pages newest first, and a small
-- index of the pages that name no phone, for deleting a tenant.
CREATE INDEX fetch_event_pages_phone_newest ON fetch_event_pages (tenant_id, phone_mac, (-first_id))
    WHERE phone_mac IS NOT NULL;
CREATE INDEX fetch_event_pages_tenant_shared ON fetch_event_pages (tenant_id) WHERE phone_mac IS NULL;

-- Existing events, a page each, under their ids.
INSERT INTO fetch_event_pages (first_id, tenant_id, phone_mac, n, last_at, at, protocol, source, source_port,
                               file_name, outcome, bytes, duration_us, sha256)
SELECT id, tenant_id, phone_mac, 1, at, ARRAY[at], ARRAY[protocol], ARRAY[source], ARRAY[source_port],
       ARRAY[file_name], ARRAY[outcome], ARRAY[bytes], ARRAY[duration_us], ARRAY[sha256]
FROM fetch_events;

DROP TABLE fetch_events;

CREATE VIEW fetch_events AS
SELECT p.first_id + e.i - 1 AS id, e.at, p.tenant_id, e.protocol, e.source, e.source_port, e.file_name,
       p.phone_mac, e.outcome, e.bytes, e.duration_us, e.sha256
FROM fetch_event_pages p
CROSS JOIN LATERAL unnest(p.at, p.protocol, p.source, p.source_port, p.file_name, p.outcome, p.bytes,
                          p.duration_us, p.sha256)
    WITH ORDINALITY AS e (at, protocol, source, source_port, file_name, outcome, bytes, duration_us, sha256, i);

CREATE FUNCTION dialtone_insert_fetch_event() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO fetch_event_pages (tenant_id, phone_mac, n, last_at, at, protocol, source, source_port,
                                   file_name, outcome, bytes, duration_us, sha256)
    VALUES (NEW.tenant_id, NEW.phone_mac, 1, NEW.at, ARRAY[NEW.at], ARRAY[NEW.protocol], ARRAY[NEW.source],
            ARRAY[NEW.source_port], ARRAY[NEW.file_name], ARRAY[NEW.outcome], ARRAY[NEW.bytes],
            ARRAY[NEW.duration_us], ARRAY[NEW.sha256])
    RETURNING first_id INTO NEW.id;
    RETURN NEW;
END
$$;

CREATE TRIGGER fetch_events_insert INSTEAD OF INSERT ON fetch_events
    FOR EACH ROW EXECUTE FUNCTION dialtone_insert_fetch_event();

CREATE OR REPLACE FUNCTION dialtone_delete_tenant_fetch_events() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM fetch_event_pages WHERE tenant_id = OLD.id AND phone_mac IS NOT NULL;
    DELETE FROM fetch_event_pages WHERE tenant_id = OLD.id AND phone_mac IS NULL;
    DELETE FROM phone_files_served WHERE tenant_id = OLD.id;
    RETURN OLD;
END
$$;
