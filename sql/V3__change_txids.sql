-- dialtone schema, version 3: the writing transaction's id on every row the snapshot depends on.
--
-- A snapshot load records `pg_current_snapshot()`. The next load reads only the phones (and phone
-- tombstones) whose `txid` that recorded snapshot could not see: `txid >= pg_snapshot_xmin(prev) AND NOT
-- pg_visible_in_snapshot(txid, prev)`. Unlike comparing sequence numbers, this never misses a transaction
-- that drew an earlier number but committed later.

ALTER TABLE tenants    ADD COLUMN txid xid8 NOT NULL DEFAULT pg_current_xact_id();
ALTER TABLE networks   ADD COLUMN txid xid8 NOT NULL DEFAULT pg_current_xact_id();
ALTER TABLE phones     ADD COLUMN txid xid8 NOT NULL DEFAULT pg_current_xact_id();
ALTER TABLE files      ADD COLUMN txid xid8 NOT NULL DEFAULT pg_current_xact_id();
ALTER TABLE tombstones ADD COLUMN txid xid8 NOT NULL DEFAULT pg_current_xact_id();

CREATE INDEX phones_txid ON phones (txid);
CREATE INDEX tombstones_txid ON tombstones (txid);

CREATE OR REPLACE FUNCTION dialtone_bump_revision() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.revision := nextval('change_seq');
    NEW.txid := pg_current_xact_id();
    RETURN NEW;
END $$;
