"""One process's reporting session: what it has told the operator so far, and the sender that tells it.

Both the library API (`trainsmart_client.report(...)`) and the stdout/TensorBoard wrapper drive a `Session`,
so there is one place that decides what a report is. Outside a job (no report URL) and on ranks other than
0 every call is a no-op: the same script runs unchanged on a laptop or in a DDP job where every rank calls
`report`. The operator keeps one curve per job, so only global rank 0 speaks.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from typing import Any, Mapping

from trainsmart_client import wire
from trainsmart_client.job_env import JobEnvironment, read_job_environment
from trainsmart_client.sender import PostFunction, ReportSender
from trainsmart_client.stop_signal import StopFlag

log = logging.getLogger("trainsmart_client")


class Session:
    """Reports of one process. Thread-safe: the wrapper reports from its output and TensorBoard threads."""

    def __init__(
        self,
        environment: JobEnvironment | None = None,
        *,
        post: PostFunction | None = None,
        progress_interval_s: float | None = None,
        stop_flag: StopFlag | None = None,
        objective_metric: str = "",
    ) -> None:
        self.environment = environment if environment is not None else read_job_environment()
        self.stop_flag = stop_flag if stop_flag is not None else StopFlag()
        self._post = post
        self._progress_interval_s = progress_interval_s
        self._sender: ReportSender | None = None
        self._lock = threading.RLock()
        self._said_noop = False
        self._started = time.monotonic()
        self._rate_origin: tuple[float, int] | None = None
        self.epoch = 0
        self.step = 0
        self.total_epochs: int | None = None
        self.total_steps: int | None = None
        self.last_metrics: dict[str, float] = {}
        self._diagnosed: set[tuple[str, int]] = set()
        self.final_sent = False
        self.objective_metric = (wire.metric_name(objective_metric) or "") if objective_metric else ""
        """The metric sweeps and early stopping watch, when the caller named one (then in every report)."""
        self._objective_history: deque[tuple[int, float]] = deque(maxlen=wire.FINAL_HISTORY_MAX_ITEMS)
        self.last_checkpoint: dict[str, Any] | None = None
        self.best_checkpoint: dict[str, Any] | None = None

    # ---- gating ----------------------------------------------------------------------------------------

    def _sender_or_none(self) -> ReportSender | None:
        """The sender, started on first need; None when this process does not report (said once)."""
        env = self.environment
        if not env.reports or env.report_url is None:
            if not self._said_noop:
                self._said_noop = True
                if env.in_job:
                    log.debug("rank %d does not report (only rank 0 does)", env.rank)
                else:
                    log.info("not inside a TrainingJob (no report URL in the environment): reports are not sent")
            return None
        if self._sender is None:
            options: dict[str, Any] = {}
            if self._progress_interval_s is not None:
                options["progress_interval_s"] = self._progress_interval_s
            self._sender = ReportSender(
                env.report_url, env.report_token, post=self._post, ca_file=env.report_ca_file, **options
            )
        return self._sender

    def _build(self, kind: str, metrics: Mapping[str, float], **extra: Any) -> dict[str, Any]:
        return wire.build_report(
            kind,
            identity=self.environment.identity(),
            device=self.environment.device,
            epoch=self.epoch,
            total_epochs=self.total_epochs or 0,
            step=self.step,
            metrics=metrics,
            objective_metric=self.objective_metric,
            **extra,
        )

    @property
    def tracked_objective(self) -> str:
        """The metric whose per-epoch values the final result carries: the named objective, else the one the
        operator tracks by default (so its status history can be filled from the termination message)."""
        return self.objective_metric or wire.DEFAULT_OBJECTIVE

    def _remember_epoch_value(self, epoch: int, finite: Mapping[str, float]) -> None:
        value = finite.get(self.tracked_objective)
        if value is None:
            return
        history = self._objective_history
        if history and history[-1][0] >= epoch:  # a repeated or rewound epoch (a restart) replaces the newer ones
            kept = [point for point in history if point[0] < epoch]
            history.clear()
            history.extend(kept)
        history.append((epoch, value))

    def _eta(self) -> float | None:
        """Seconds left, from this process's own pace (a resumed run's earlier epochs took unknown time)."""
        origin = self._rate_origin
        if origin is None:
            return None
        elapsed = time.monotonic() - origin[0]
        if self.total_steps and self.step > origin[1]:
            return max(self.total_steps - self.step, 0) * elapsed / (self.step - origin[1])
        return None

    # ---- the operations --------------------------------------------------------------------------------

    def report(
        self, metrics: Mapping[str, Any], epoch: int | None = None, step: int | None = None, final: bool = False
    ) -> None:
        """Metrics after `epoch` (an epoch report: joins the status history), or latest values (progress);
        `final` marks the run's last metrics. Non-finite values are left out and a non-finite loss becomes a
        NonFiniteLoss diagnostic (once per metric and epoch)."""
        with self._lock:
            if epoch is not None:
                self.epoch = max(int(epoch), 0)
            if step is not None:
                self.step = max(int(step), 0)
            finite, non_finite = wire.split_finite(metrics)
            self.last_metrics.update(finite)
            if epoch is not None:
                self._remember_epoch_value(self.epoch, finite)
            sender = self._sender_or_none()
            if sender is None:
                return
            if final:
                exit_code = wire.EXIT_TERMINATED if self.stop_flag.is_set() else 0
                self._send_final(sender, self.final_result(exit_code))
            elif epoch is not None:
                sender.submit(self._build(wire.EPOCH, finite))
            elif finite:
                sender.submit_progress(self._build(wire.PROGRESS, finite, eta_seconds=self._eta()))
            self._diagnose(sender, non_finite, epoch)

    def _diagnose(self, sender: ReportSender, non_finite: Mapping[str, float], epoch: int | None) -> None:
        findings = []
        for name, value in sorted(non_finite.items()):
            key = (name, self.epoch)
            if wire.is_loss(name) and key not in self._diagnosed:
                self._diagnosed.add(key)
                findings.append(wire.non_finite_loss_diagnostic(name, value, epoch, self.step or None))
        if findings:
            sender.submit(self._build(wire.DIAGNOSTIC, {}, diagnostics=findings))

    def progress(
        self,
        epoch: int,
        total_epochs: int | None = None,
        step: int | None = None,
        total_steps: int | None = None,
    ) -> None:
        """Where training is: `epoch` epochs completed of `total_epochs`, `step` of `total_steps`."""
        with self._lock:
            self.epoch = max(int(epoch), 0)
            if total_epochs is not None:
                self.total_epochs = max(int(total_epochs), 1)
            if step is not None:
                self.step = max(int(step), 0)
            if total_steps is not None:
                self.total_steps = max(int(total_steps), 1)
            if self._rate_origin is None:
                self._rate_origin = (time.monotonic(), self.step)
            sender = self._sender_or_none()
            if sender is not None:
                sender.submit_progress(self._build(wire.PROGRESS, {}, eta_seconds=self._eta()))

    def set_total_epochs(self, total_epochs: int) -> None:
        with self._lock:
            self.total_epochs = max(int(total_epochs), 1)

    def report_checkpoint(self, path: str, epoch: int | None = None) -> None:
        """A checkpoint was saved at `path` after `epoch` completed epochs (default: the current epoch): the
        status shows it, and the final report names the newest one. Sent in order, never coalesced away."""
        with self._lock:
            saved_after = self.epoch if epoch is None else max(int(epoch), 0)
            self.last_checkpoint = wire.checkpoint_info(str(path), saved_after)
            sender = self._sender_or_none()
            if sender is not None:
                sender.submit(self._build(wire.PROGRESS, {}, checkpoint=self.last_checkpoint))

    def report_best_checkpoint(self, path: str, epoch: int, metric: str, value: float) -> None:
        """The best checkpoint by `metric` is now at `path`, saved after `epoch` with `value` (status shows it
        as checkpoint.best; a sweep's bestTrial points at it). Sent in order, and named again in the final report."""
        name = wire.metric_name(metric) or metric
        with self._lock:
            self.best_checkpoint = wire.best_checkpoint_info(str(path), epoch, name, value)
            sender = self._sender_or_none()
            if sender is not None:
                sender.submit(self._build(wire.PROGRESS, {}, best_checkpoint=self.best_checkpoint))

    def final_result(self, exit_code: int, reason: str = "") -> dict[str, Any]:
        """The contract's FinalResult of this run so far (camelCase): what the final report and the
        termination message say. The objective is named when the caller named one or its values were seen."""
        with self._lock:
            history = list(self._objective_history)
            return wire.build_final_result(
                exit_code=exit_code,
                epochs_completed=self.epoch,
                metrics=self.last_metrics,
                duration_seconds=time.monotonic() - self._started,
                reason=reason,
                objective_metric=self.objective_metric or (self.tracked_objective if history else ""),
                objective_history=history,
            )

    def _send_final(self, sender: ReportSender, final: Mapping[str, Any]) -> None:
        report = self._build(
            wire.FINAL,
            self.last_metrics,
            final=final,
            checkpoint=self.last_checkpoint,
            best_checkpoint=self.best_checkpoint,
        )
        sender.submit(report)
        self.final_sent = True

    def report_exit(self, exit_code: int, reason: str = "") -> dict[str, Any]:
        """The final report for a run that ended with `exit_code` (the wrapper, when its command exits);
        returns the final result, also when this process does not report (for the termination message)."""
        with self._lock:
            final = self.final_result(exit_code, reason)
            sender = self._sender_or_none()
            if sender is not None and not self.final_sent:
                self._send_final(sender, final)
            return final

    def finish(self, timeout_s: float = 10.0) -> bool:
        """Deliver what is queued within `timeout_s`; True when everything arrived (or nothing was to send)."""
        with self._lock:
            sender, self._sender = self._sender, None  # a report after finish() starts a new sender
        return sender.close(timeout_s) if sender is not None else True
