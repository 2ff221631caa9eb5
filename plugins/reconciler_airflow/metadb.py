"""Connection arguments for Airflow's own metadata database when it is SQLite (the demo and
the single-machine tests): ``[database] sql_alchemy_connect_args`` names this dict.

api-server, scheduler, dag-processor, triggerer and task processes all write one file; on
2 busy cores a writer can hold the lock past sqlite3's 5 s default and another process's
request then failed with "Database error" (seen when a manual trigger met a scheduled run).
"""

SQLITE_CONNECT_ARGS = {"timeout": 60}
