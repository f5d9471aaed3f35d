"""The operator's Prometheus metrics: a private registry with reconcile and report counters plus
level-based series derived from the watched objects (`objects.py`), served on their own port."""

from trainsmart.observability.operator_metrics import OperatorMetrics
from trainsmart.observability.server import METRICS_PATH, build_metrics_app, start_metrics_server

__all__ = ["METRICS_PATH", "OperatorMetrics", "build_metrics_app", "start_metrics_server"]
