-- dialtone schema, version 4: stored file names may sit in directories, as Cisco locale and background
-- files do (`English_United_States/mk-sip.jar`, `Desktops/320x196x4/List.xml`). Each segment keeps the
-- old rule; no empty segment, no segment starting with '.', so no '..'.
ALTER TABLE files DROP CONSTRAINT files_name_check;
ALTER TABLE files ADD CONSTRAINT files_name_check
    CHECK (char_length(name) <= 255
           AND name ~ '^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}(/[A-Za-z0-9_-][A-Za-z0-9._-]{0,127})*$');
