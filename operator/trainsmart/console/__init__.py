"""`trainsmart` for people: reading jobs and sweeps through a kubeconfig and showing them (get, describe,
watch, logs, report, tensorboard). Read-only; the operator never imports this package.

The functions behind each command return data, so a notebook can use them (`api.py`).
"""

from trainsmart.console.access import Cluster, ConsoleError, Target, connect
from trainsmart.console.api import describe_lines, get_rows, report_data, write_report
from trainsmart.console.report_data import JobReport, SweepReport, job_report, sweep_report

__all__ = [
    "Cluster",
    "ConsoleError",
    "JobReport",
    "SweepReport",
    "Target",
    "connect",
    "describe_lines",
    "get_rows",
    "job_report",
    "report_data",
    "sweep_report",
    "write_report",
]
