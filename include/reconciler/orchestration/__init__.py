"""Runs the core's cycle for one target: wiring (runtime), the Airflow steps (pipeline),
batched actuation, the data-quality gate (quality)."""
