-- Run once by the postgres image when it initialises an empty data folder (as POSTGRES_USER
-- `trader`, in POSTGRES_DB `trading`). docker-compose.yml preloads the library
-- (shared_preload_libraries=pg_stat_statements); this creates the views.
CREATE EXTENSION IF NOT EXISTS pg_stat_statements SCHEMA public;

-- The runbook's slow-query command was written for PostgreSQL <= 12:
--   psql -U trader -c "SELECT query, mean_time, calls FROM pg_stat_statements ORDER BY mean_time DESC LIMIT 10;"
-- PostgreSQL 13 renamed the *_time columns to *_exec_time. This view keeps every column and adds
-- the old names. It lives in its own schema, which only sessions opened inside the postgres
-- container see first (PGOPTIONS=-c search_path=runbook,public in docker-compose.yml); the agents'
-- connections keep the default search_path and never see it.
CREATE SCHEMA IF NOT EXISTS runbook;
CREATE OR REPLACE VIEW runbook.pg_stat_statements AS
SELECT s.*,
       s.total_exec_time  AS total_time,
       s.min_exec_time    AS min_time,
       s.max_exec_time    AS max_time,
       s.mean_exec_time   AS mean_time,
       s.stddev_exec_time AS stddev_time
FROM public.pg_stat_statements AS s;
