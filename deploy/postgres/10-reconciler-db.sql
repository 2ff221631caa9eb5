-- Run once by the postgres image on an empty volume (docker-entrypoint-initdb.d), by psql as
-- POSTGRES_USER. Airflow's metadata lives in POSTGRES_DB (airflow); Reconciler's state store
-- (history, audit, breakers, leases) in its own database, so either can be backed up,
-- restored or moved without the other, and under its own role: `reconciler` owns that database
-- and nothing else (no superuser, no CREATEDB or CREATEROLE, no access to Airflow's database),
-- so the workers' store URL cannot read or change Airflow's metadata. Its password comes from
-- RECONCILER_DB_PASSWORD (.env; docker-compose.yaml requires it); changing it later needs
-- ALTER ROLE, since this file never runs again on a volume that has data.
\set ON_ERROR_STOP on
\getenv reconciler_password RECONCILER_DB_PASSWORD
\if :{?reconciler_password}
\else
  DO $$ BEGIN RAISE EXCEPTION 'RECONCILER_DB_PASSWORD is not set'; END $$;
\endif
CREATE ROLE reconciler LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD :'reconciler_password';
CREATE DATABASE reconciler OWNER reconciler;
REVOKE ALL ON DATABASE reconciler FROM PUBLIC;
GRANT CONNECT, TEMPORARY ON DATABASE reconciler TO reconciler;
REVOKE CONNECT, TEMPORARY ON DATABASE :"DBNAME" FROM PUBLIC;  -- POSTGRES_DB: Airflow's
