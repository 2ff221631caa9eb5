-- Run once by the postgres image on an empty volume (docker-entrypoint-initdb.d), as
-- POSTGRES_USER. Airflow's metadata lives in POSTGRES_DB (airflow); Reconciler's state store
-- (history, audit, breakers, leases) in its own database, so either can be backed up,
-- restored or moved without the other.
CREATE DATABASE reconciler OWNER airflow;
