"""A training run from set-up to final result: the orchestration around the hot loop in `epoch.py`.

Order of business: join the process group, announce the device in the first report, load data and model,
resume from the newest valid checkpoint, then per epoch: train, reduce metrics across ranks, evaluate,
diagnose, report, checkpoint. Every rank computes the same reduced metrics, so early stopping and the
SIGTERM stop happen at the same step everywhere; only rank 0 reports, checkpoints and writes the result.
Errors are classified into the contract's exit codes here and nowhere else.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable

import torch
from torch.nn.parallel import DistributedDataParallel

from trainsmart_trainer import checkpoint, ddp, diagnostics, results
from trainsmart_trainer.components import Components, PermanentError, RunOutcome, StopSignal, default_components
from trainsmart_trainer.config import ClassWeightsMode, MixedPrecision, TrainerConfig
from trainsmart_trainer.contract import (
    CheckpointInfo,
    DeviceInfo,
    Diagnostic,
    ExitCode,
    FinalResult,
    FinalStatus,
    JobIdentity,
    ReportKind,
)
from trainsmart_trainer.ddp import DistInfo
from trainsmart_trainer.device import DevicePlan
from trainsmart_trainer.epoch import EpochSampler, NonFiniteLossError, TrainPass, build_trainee, train_pass
from trainsmart_trainer.evaluate import EvalSplit, dataset_size, eval_split, evaluate_split, make_loader, train_metrics
from trainsmart_trainer.objective import BestTracker, metric_mode, objective_metric, should_stop_early
from trainsmart_trainer.promexport import TrainerMetrics
from trainsmart_trainer.report import Reporter, ReportSender
from trainsmart_trainer.resume import resume_run, save_run_checkpoint
from trainsmart_trainer.settings import RuntimeSettings

log = logging.getLogger(__name__)


class TrainingRun:
    """One process's part of a run. `execute()` never raises; it returns the outcome and exit code."""

    def __init__(
        self,
        config: TrainerConfig,
        settings: RuntimeSettings,
        dist: DistInfo,
        device_plan: DevicePlan,
        *,
        components: Components | None = None,
        stop: StopSignal | None = None,
        progress_interval_s: float = 10.0,
        report_close_timeout_s: float = 10.0,
        on_epoch_end: Callable[[TrainingRun], None] | None = None,
    ) -> None:
        self.config = config
        self.settings = settings
        self.dist = dist
        self.plan = device_plan
        self.device = torch.device(device_plan.torch_device)
        self.components = components or default_components()
        self.stop = stop or StopSignal()
        self.progress_interval_s = progress_interval_s
        self.report_close_timeout_s = report_close_timeout_s
        self.on_epoch_end = on_epoch_end  # tests and benches look at a run between epochs
        self.metrics_port: int | None = None  # where /metrics is served (the bound port when asked for 0)
        self.started = time.monotonic()
        self.backend = ""
        self.epoch = 0  # epochs completed
        self.step_in_epoch = 0  # batches done in the epoch after `epoch` (resume after SIGTERM)
        self.global_step = 0
        self.best = BestTracker()
        self.tracker = diagnostics.DiagnosticsTracker()
        self.found: list[Diagnostic] = []
        self.history: list[dict[str, float]] = []
        self.last_metrics: dict[str, float] = {}
        self.last_checkpoint: CheckpointInfo | None = None
        self.early_stopped = False
        self.objective = ""
        self.epoch_seconds: list[float] = []
        self.reporter = Reporter(identity=self._identity(), device=self._device_info(), total_epochs=config.epochs)
        self.prom: TrainerMetrics | None = None
        self._last_progress = 0.0
        self._pass_started = 0.0
        # (epoch, step_in_epoch) of the newest checkpoint; a fresh run has nothing worth saving yet.
        self.saved_at: tuple[int, int] = (0, 0)
        self.clean_exit = False  # every rank ended the same orderly way: the process group can be destroyed

    # ---- identity and announcements --------------------------------------------------------------------------

    def _identity(self) -> JobIdentity:
        s = self.settings
        return JobIdentity(
            namespace=s.job_namespace, name=s.job_name, rank=self.dist.rank, world_size=self.dist.world_size
        )

    def _device_info(self) -> DeviceInfo:
        p = self.plan
        backend = ddp.backend_for(p.type) if self.dist.distributed else ""
        return DeviceInfo(
            type=p.type, simulated_gpus=p.simulated_gpus, gpus=p.gpus, name=p.name, distributed_backend=backend
        )

    def _start_reporting(self) -> None:
        s = self.settings
        if self.dist.is_main and s.report_url:
            sender = ReportSender(s.report_url, s.report_token, ca_file=s.report_ca_file).start()
            self.reporter.sender = sender
        if self.dist.local_rank == 0 and s.metrics_port is not None:
            self.prom = TrainerMetrics("", cuda=self.device.type == "cuda")
            self.metrics_port = self.prom.serve(s.metrics_port)
            self.prom.set_epoch(0, self.config.epochs, 0)
        # The first report says where training runs, before anything slow (data, model) can fail.
        if self.dist.is_main:
            self.reporter.send(ReportKind.PROGRESS)

    def _diagnose(self, found: list[Diagnostic]) -> None:
        """Log and report new findings (rank 0 reports; every rank has the same findings)."""
        for item in found:
            self.found.append(item)
            if self.dist.is_main:
                level = logging.ERROR if item.severity.value == "Error" else logging.WARNING
                log.log(level, "diagnostic %s: %s. Suggestion: %s", item.type.value, item.message, item.suggestion)
        if found and self.dist.is_main:
            self.reporter.send(ReportKind.DIAGNOSTIC, step=self.global_step, epoch=self.epoch, diagnostics=found)

    # ---- set-up -------------------------------------------------------------------------------------------------

    def _setup(self) -> None:
        cfg = self.config
        self.backend = ddp.init_process_group(self.dist, self.device)
        self._start_reporting()
        checkpoint.seed_everything(cfg.seed)
        self.data = self.components.load_data(cfg)
        data = self.data
        self.objective = objective_metric(cfg, dataset_size(data.val) > 0)
        self.mode = metric_mode(self.objective, cfg)
        self.reporter.objective_metric = self.objective
        if self.prom is not None:
            self.prom.objective_metric = self.objective
        model = self.components.build_model(cfg, data).to(self.device)
        loss_module = self.components.loss_fn(cfg, data).to(self.device)
        self.train_sampler = EpochSampler(
            data.train, world_size=self.dist.world_size, rank=self.dist.rank, seed=cfg.seed, shuffle=True
        )
        self.train_loader = make_loader(data.train, self.train_sampler, cfg, self.device)
        self.val = eval_split(data.val, self.dist, cfg, self.device)
        self.test = eval_split(data.test, self.dist, cfg, self.device)
        steps_per_epoch = max(math.ceil(len(self.train_sampler) / cfg.batch_size), 1)
        self.t = build_trainee(cfg, model, loss_module, self.device, steps_per_epoch, data.task == "classification")
        self._resume()
        cuda = self.device.type == "cuda"
        if self.dist.distributed:
            ids = [self.device.index] if cuda else None
            self.t.model = DistributedDataParallel(model, device_ids=ids)
        found: list[Diagnostic | None] = []
        if cfg.mixed_precision != MixedPrecision.NONE and not cuda:
            found.append(diagnostics.mixed_precision_ignored(cfg.mixed_precision.value))
        if data.task == "classification" and data.class_counts:
            mode = cfg.class_weights.mode
            found.append(
                diagnostics.class_imbalance(data.class_counts, mode.value if mode != ClassWeightsMode.NONE else "none")
            )
        self._diagnose([d for d in (self.tracker.first(item) for item in found) if d is not None])
        if self.dist.is_main:
            log.info(
                "data %s (%s): %d train, %d val, %d test samples; %d steps per epoch on each of %d processes",
                data.name,
                data.task,
                dataset_size(data.train),
                dataset_size(self.val.dataset if self.val else None),
                dataset_size(self.test.dataset if self.test else None),
                steps_per_epoch,
                self.dist.world_size,
            )

    # ---- checkpoints ---------------------------------------------------------------------------------------------

    def _resume(self) -> None:
        resume_run(self)

    def _save_checkpoint(self) -> None:
        save_run_checkpoint(self)

    # ---- epochs -----------------------------------------------------------------------------------------------

    def _on_step(self, global_step: int, progress: TrainPass) -> None:
        if self.prom is None and self.reporter.sender is None:
            return
        now = time.monotonic()
        if now - self._last_progress < self.progress_interval_s:
            return
        self._last_progress = now
        elapsed = max(time.perf_counter() - self._pass_started, 1e-9)
        rate = progress.samples * self.dist.world_size / elapsed
        if self.prom is not None:
            self.prom.step.set(global_step)
            self.prom.samples_per_second.set(rate)
        if self.dist.is_main:
            self.reporter.send(
                ReportKind.PROGRESS,
                step=global_step,
                epoch=self.epoch,
                samples_per_second=rate,
                eta_seconds=self._eta(),
            )

    def _eta(self) -> float | None:
        if not self.epoch_seconds:
            return None
        return (self.config.epochs - self.epoch) * sum(self.epoch_seconds) / len(self.epoch_seconds)

    def _train_metrics(self, tp: TrainPass) -> dict[str, float]:
        return train_metrics(tp, self.t, self.data.task, distributed=self.dist.distributed)

    def _evaluate(self, split: str, part: EvalSplit | None) -> dict[str, float]:
        if part is None:
            return {}
        return evaluate_split(self.t, part, split, self.data, self.components, self.dist.world_size)

    def _stop_agreed(self) -> bool:
        return ddp.any_rank(self.stop.requested, self.device) if self.dist.distributed else self.stop.requested

    def _run_epochs(self) -> ExitCode:
        cfg = self.config
        while self.epoch < cfg.epochs and not self.early_stopped:
            if self._stop_agreed():
                return self._terminated(save=self.saved_at != (self.epoch, self.step_in_epoch))
            self.train_sampler.set_epoch(self.epoch, self.step_in_epoch * cfg.batch_size)
            self._pass_started = time.perf_counter()
            tp = train_pass(
                self.t,
                self.train_loader,
                global_step=self.global_step,
                stop_requested=lambda: self.stop.requested,
                on_step=self._on_step,
                distributed=self.dist.distributed,
            )
            self.global_step += tp.steps
            if tp.first_large_grad is not None:
                step, norm = tp.first_large_grad
                found = diagnostics.exploding_gradients(norm, step=step, epoch=self.epoch + 1, clip=cfg.grad_clip_norm)
                self._diagnose([d for d in [self.tracker.first(found)] if d is not None])
            if tp.interrupted:
                self.step_in_epoch += tp.steps
                return self._terminated(save=True)
            self.epoch += 1
            self.step_in_epoch = 0
            self.epoch_seconds.append(tp.seconds)
            self._end_of_epoch(tp)
            last = self.epoch == cfg.epochs or self.early_stopped
            if last or self.epoch % self.settings.checkpoint_interval_epochs == 0:
                self._save_checkpoint()
            self._publish_epoch()
            if self.on_epoch_end is not None:
                self.on_epoch_end(self)
        return ExitCode.EARLY_STOPPED if self.early_stopped else ExitCode.SUCCESS

    def _end_of_epoch(self, tp: TrainPass) -> None:
        cfg = self.config
        metrics = self._train_metrics(tp)
        metrics.update(self._evaluate("val", self.val))
        if not math.isfinite(metrics.get("val_loss", 0.0)):
            raise NonFiniteLossError(metrics["val_loss"], self.global_step, tp.first_large_grad, split="validation")
        self.last_metrics = metrics
        self.history.append({"epoch": float(self.epoch), **metrics})
        layer_norms = {name: total / max(tp.layer_norm_samples, 1) for name, total in tp.layer_norm_sums.items()}
        chance = diagnostics.chance_accuracy(self.data.class_counts) if self.data.class_counts else None
        self._diagnose(
            self.tracker.after_epoch(
                epoch=self.epoch,
                train_loss=metrics["train_loss"],
                val_loss=metrics.get("val_loss"),
                train_accuracy=metrics.get("train_accuracy"),
                chance=chance,
                layer_grad_norms=layer_norms,
                learning_rate=cfg.learning_rate,
            )
        )
        value = metrics.get(self.objective)
        if value is None:
            raise PermanentError(
                f"earlyStopping.metric {self.objective!r} is not a metric this run produces; use one of: "
                + ", ".join(sorted(metrics))
            )
        min_delta = cfg.early_stopping.min_delta if cfg.early_stopping else 0.0
        self.best = self.best.update(value, self.epoch, self.mode, min_delta)
        self.early_stopped = should_stop_early(self.best, cfg)
        if self.dist.is_main:
            shown = " ".join(f"{k}={v:.4g}" for k, v in metrics.items() if k.startswith(("train_", "val_")))
            log.info("epoch %d/%d: %s (%.0f samples/s, %.2f s)", self.epoch, cfg.epochs, shown,
                     metrics["samples_per_second"], tp.seconds)  # fmt: skip
            if self.early_stopped:
                log.info("early stopping: %s has not improved for %d epochs", self.objective, self.best.bad_epochs)

    def _publish_epoch(self) -> None:
        """Epoch report and gauges, after the epoch's checkpoint so the report can point at it."""
        metrics = self.last_metrics
        if self.dist.is_main:
            self.reporter.send(
                ReportKind.EPOCH,
                step=self.global_step,
                epoch=self.epoch,
                metrics=metrics,
                samples_per_second=metrics.get("samples_per_second"),
                eta_seconds=self._eta(),
                checkpoint=self.last_checkpoint if self.saved_at == (self.epoch, 0) else None,
            )
        if self.prom is not None:
            self.prom.set_epoch(self.epoch, self.config.epochs, self.global_step)
            self.prom.set_metrics(metrics)
            if self.device.type == "cuda":
                self.prom.set_gpu_memory(
                    torch.cuda.memory_allocated(self.device), torch.cuda.max_memory_allocated(self.device)
                )

    def _terminated(self, *, save: bool) -> ExitCode:
        if save:
            self._save_checkpoint()
        if self.dist.is_main:
            where = f"; checkpoint {self.last_checkpoint.path}" if self.last_checkpoint else ""
            log.warning("%s: stopped after %d epochs + %d steps%s", self.stop.reason or "stop requested",
                        self.epoch, self.step_in_epoch, where)  # fmt: skip
        return ExitCode.TERMINATED

    # ---- the end ---------------------------------------------------------------------------------------------

    def _final(self, code: ExitCode, reason: str = "") -> FinalResult:
        return results.final_result(
            code,
            reason,
            epochs_completed=self.epoch,
            objective_metric=self.objective,
            best=self.best,
            metrics=self.last_metrics,
            duration_seconds=time.monotonic() - self.started,
            history=self.history,
        )

    def _finish(self, code: ExitCode, reason: str = "") -> RunOutcome:
        if code in (ExitCode.SUCCESS, ExitCode.EARLY_STOPPED):
            self.last_metrics = {**self.last_metrics, **self._evaluate("test", self.test)}
            if self.dist.is_main:
                log.info(
                    "test: %s", " ".join(f"{k}={v:.4g}" for k, v in self.last_metrics.items() if k.startswith("test_"))
                )
        final = self._final(code, reason)
        self.clean_exit = code in (ExitCode.SUCCESS, ExitCode.EARLY_STOPPED, ExitCode.TERMINATED)
        self._publish(final)
        return RunOutcome(code, final, list(self.found), list(self.history))

    def _publish(self, final: FinalResult) -> None:
        """Final report, result file, termination message: rank 0 always; other ranks only their failure."""
        s = self.settings
        if self.dist.is_main:
            self.reporter.send(
                ReportKind.FINAL,
                step=self.global_step,
                epoch=self.epoch,
                metrics=final.metrics,
                diagnostics=self.found[-64:],
                checkpoint=self.last_checkpoint,
                final=final,
            )
            if s.result_path is not None:
                document = results.result_document(final, self.reporter.identity.model_dump(mode="json", by_alias=True))
                results.write_result_file(s.result_path, document)
        if self.dist.is_main or (final.status == FinalStatus.FAILED and self.dist.local_rank == 0):
            results.write_termination_message(s.termination_log, results.termination_message(final))

    def execute(self) -> RunOutcome:
        """Run to the end and classify how it ended; teardown (reports, metrics server, group) always runs."""
        from trainsmart_trainer.data import DataError

        try:
            self._setup()
            return self._finish(self._run_epochs())
        except NonFiniteLossError as error:
            found: list[Diagnostic | None] = []
            if error.large_grad is not None:
                step, norm = error.large_grad
                clip = self.config.grad_clip_norm
                found.append(diagnostics.exploding_gradients(norm, step=step, epoch=self.epoch + 1, clip=clip))
            fatal = diagnostics.non_finite_loss(
                error.value,
                step=error.step,
                epoch=self.epoch + (1 if error.split == "training" else 0),
                learning_rate=self.config.learning_rate,
                clip=self.config.grad_clip_norm,
                split=error.split,
            )
            self._diagnose([d for d in (self.tracker.first(item) for item in [*found, fatal]) if d is not None])
            return self._finish(ExitCode.PERMANENT_FAILURE, f"{fatal.message}. Suggestion: {fatal.suggestion}")
        except (DataError, PermanentError) as error:
            log.error("permanent failure: %s", error)
            return self._finish(ExitCode.PERMANENT_FAILURE, str(error))
        except Exception as error:
            log.exception("training failed; a restart may fix this")
            return self._finish(ExitCode.RETRYABLE_FAILURE, f"{type(error).__name__}: {error}")
        finally:
            self._teardown()

    def _teardown(self) -> None:
        delivered = self.reporter.close(self.report_close_timeout_s)
        if self.reporter.sender is not None and not delivered:
            log.warning("not every report reached %s; the result file and termination message have the outcome",
                        self.settings.report_url)  # fmt: skip
        if self.prom is not None:
            self.prom.close()
        if self.clean_exit:
            # After a failure peers may still sit in a collective; destroying the group could then hang.
            ddp.destroy_process_group()
