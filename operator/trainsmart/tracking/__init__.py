"""Experiment tracking logged by the operator (issue 14): MLflow runs fed from reports and status.

`mlflow_plan` (pure: the run an object should have, and what to send), `mlflow_rest` (MLflow's REST API on
aiohttp), `mlflow_sync` (the per-run tasks with bounded queues and backoff). See docs/tracking.md.
"""
