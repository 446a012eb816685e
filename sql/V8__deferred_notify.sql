-- A NOTIFY makes its transaction take a cluster-wide lock at commit, held until the commit is flushed:
-- notifying writers commit one at a time. Measured with pgbench (8 clients, the API's one-statement phone
-- create): 2,918 statements/s with the per-statement NOTIFY, 5,837 without. Sessions that set
-- `dialtone.defer_notify = on` (the API's worker pools, as a connection option) skip it; the API then sends
-- one coalesced NOTIFY after its write requests (api::ChangeNotifier). Every other session (operators'
-- psql, imports by other tools, tests) notifies as before.
CREATE OR REPLACE FUNCTION dialtone_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF current_setting('dialtone.defer_notify', true) IS DISTINCT FROM 'on' THEN
        PERFORM pg_notify('dialtone_changes', '');
    END IF;
    RETURN NULL;
END $$;
