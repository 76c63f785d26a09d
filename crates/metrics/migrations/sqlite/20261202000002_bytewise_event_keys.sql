-- PostgreSQL's migration of this version makes the event keys compare byte
-- by byte; SQLite's default collation (BINARY) already does.
SELECT 1;
