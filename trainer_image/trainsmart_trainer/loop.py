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

from trainsmart_client.sender import ReportSender
from trainsmart_trainer import checkpoint, ddp, diagnostics, results
from trainsmart_trainer.components import Components, PermanentError, RunOutcome, StopSignal, default_components
from trainsmart_trainer.config import ClassWeightsMode, MixedPrecision, TrainerConfig
from trainsmart_trainer.contract import (
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
from trainsmart_trainer.objective import objective_direction, objective_metric, should_stop_early
from trainsmart_trainer.promexport import TrainerMetrics
from trainsmart_trainer.report import Reporter
from trainsmart_trainer.resume import (
    best_objective,
    read_best_checkpoint,
    resume_run,
    save_best_checkpoint,
    save_run_checkpoint,
)
from trainsmart_trainer.run_state import RunState
from trainsmart_trainer.settings import RuntimeSettings
from trainsmart_trainer.tracking import Tracking, start_tracking

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
        self.device_plan = device_plan
        self.device = torch.device(device_plan.torch_device)
        self.components = components or default_components()
        self.stop = stop or StopSignal()
        self.progress_interval_s = progress_interval_s
        self.report_close_timeout_s = report_close_timeout_s
        self.on_epoch_end = on_epoch_end  # tests and benches look at a run between epochs
        self.metrics_port: int | None = None  # where /metrics is served (the bound port when asked for 0)
        self.started = time.monotonic()
        self.backend = ""
        self.state = RunState()  # replaced wholesale when a checkpoint is resumed
        self.reported_diagnostics: list[Diagnostic] = []
        self.objective = ""
        self.reporter = Reporter(identity=self._identity(), device=self._device_info(), total_epochs=config.epochs)
        self.metrics_exporter: TrainerMetrics | None = None
        self.tracking = Tracking()  # TensorBoard / W&B on rank 0, started once the resume point is known
        self._last_progress = 0.0
        self._pass_started = 0.0
        self.clean_exit = False  # every rank ended the same orderly way: the process group can be destroyed

    @property
    def last_metrics(self) -> dict[str, float]:
        """The newest epoch's metrics (what `on_epoch_end` observers read)."""
        return self.state.last_metrics

    # ---- identity and announcements --------------------------------------------------------------------------

    def _identity(self) -> JobIdentity:
        settings = self.settings
        return JobIdentity(
            namespace=settings.job_namespace,
            name=settings.job_name,
            rank=self.dist.rank,
            world_size=self.dist.world_size,
            attempt=settings.attempt,
        )

    def _device_info(self) -> DeviceInfo:
        plan = self.device_plan
        backend = ddp.backend_for(plan.type) if self.dist.distributed else ""
        return DeviceInfo(
            type=plan.type,
            simulated_gpus=plan.simulated_gpus,
            gpus=plan.gpus,
            name=plan.name,
            distributed_backend=backend,
        )

    def _start_reporting(self) -> None:
        settings = self.settings
        if self.dist.is_main and settings.report_url:
            sender = ReportSender(settings.report_url, settings.report_token, ca_file=settings.report_ca_file)
            self.reporter.sender = sender
        if self.dist.local_rank == 0 and settings.metrics_port is not None:
            self.metrics_exporter = TrainerMetrics("", cuda=self.device.type == "cuda")
            self.metrics_port = self.metrics_exporter.serve(settings.metrics_port)
            self.metrics_exporter.set_epoch(0, self.config.epochs, 0)
        # The first report says where training runs, before anything slow (data, model) can fail; in order,
        # so a quick first epoch report cannot make it stale.
        if self.dist.is_main:
            self.reporter.send(ReportKind.PROGRESS, in_order=True)

    def _diagnose(self, findings: list[Diagnostic]) -> None:
        """Log and report new findings (rank 0 reports; every rank has the same findings)."""
        for finding in findings:
            self.reported_diagnostics.append(finding)
            if self.dist.is_main:
                level = logging.ERROR if finding.severity.value == "Error" else logging.WARNING
                log.log(level, "diagnostic %s: %s. Suggestion: %s", finding.type.value, finding.message,
                        finding.suggestion)  # fmt: skip
        if findings and self.dist.is_main:
            self.reporter.send(
                ReportKind.DIAGNOSTIC, step=self.state.global_step, epoch=self.state.epoch, diagnostics=findings
            )

    # ---- set-up -------------------------------------------------------------------------------------------------

    def _setup(self) -> None:
        config = self.config
        self.backend = ddp.init_process_group(self.dist, self.device)
        self._start_reporting()
        checkpoint.seed_everything(config.seed)
        self.data = self.components.load_data(config)
        data = self.data
        self.objective = objective_metric(config, dataset_size(data.val) > 0)
        self.direction = objective_direction(self.objective, config)
        self.reporter.objective_metric = self.objective
        self.best_objective = best_objective(self.settings, config, self.objective, self.direction)
        if self.metrics_exporter is not None:
            self.metrics_exporter.objective_metric = self.objective
        model = self.components.build_model(config, data).to(self.device)
        loss_module = self.components.loss_fn(config, data).to(self.device)
        self.train_sampler = EpochSampler(
            data.train, world_size=self.dist.world_size, rank=self.dist.rank, seed=config.seed, shuffle=True
        )
        self.train_loader = make_loader(data.train, self.train_sampler, config, self.device)
        self.val_split = eval_split(data.val, self.dist, config, self.device)
        self.test_split = eval_split(data.test, self.dist, config, self.device)
        steps_per_epoch = max(math.ceil(len(self.train_sampler) / config.batch_size), 1)
        classification = data.task == "classification"
        self.trainee = build_trainee(config, model, loss_module, self.device, steps_per_epoch, classification)
        self._resume()
        if self.dist.is_main:
            self.tracking = start_tracking(config, self.settings, self.state.epoch)
        cuda = self.device.type == "cuda"
        if self.dist.distributed:
            device_ids = [self.device.index] if cuda else None
            self.trainee.model = DistributedDataParallel(model, device_ids=device_ids)
        candidates: list[Diagnostic | None] = []
        if config.mixed_precision != MixedPrecision.NONE and not cuda:
            candidates.append(diagnostics.mixed_precision_ignored(config.mixed_precision.value))
        if data.task == "classification" and data.class_counts:
            weights_mode = config.class_weights.mode
            candidates.append(
                diagnostics.class_imbalance(
                    data.class_counts, weights_mode.value if weights_mode != ClassWeightsMode.NONE else "none"
                )
            )
        self._diagnose(self.state.diagnostics.unreported(candidates))
        if self.dist.is_main:
            log.info(
                "data %s (%s): %d train, %d val, %d test samples; %d steps per epoch on each of %d processes",
                data.name,
                data.task,
                dataset_size(data.train),
                dataset_size(self.val_split.dataset if self.val_split else None),
                dataset_size(self.test_split.dataset if self.test_split else None),
                steps_per_epoch,
                self.dist.world_size,
            )

    # ---- checkpoints ---------------------------------------------------------------------------------------------

    def _resume(self) -> None:
        resumed = resume_run(self.trainee, self.config, self.settings, self.dist)
        if resumed is not None:
            self.state = resumed
        self.state.best_checkpoint = read_best_checkpoint(self.settings, self.dist)

    def _save_checkpoint(self) -> None:
        save_run_checkpoint(self.state, self.trainee, self.config, self.settings, self.dist)

    def _save_best_checkpoint(self) -> None:
        save_best_checkpoint(self.state, self.trainee, self.config, self.settings, self.dist, self.best_objective)

    # ---- epochs -----------------------------------------------------------------------------------------------

    def _on_step(self, global_step: int, progress: TrainPass) -> None:
        if self.metrics_exporter is None and self.reporter.sender is None:
            return
        now = time.monotonic()
        if now - self._last_progress < self.progress_interval_s:
            return
        self._last_progress = now
        elapsed = max(time.perf_counter() - self._pass_started, 1e-9)
        rate = progress.samples * self.dist.world_size / elapsed
        if self.metrics_exporter is not None:
            self.metrics_exporter.step.set(global_step)
            self.metrics_exporter.samples_per_second.set(rate)
        if self.dist.is_main:
            self.reporter.send(
                ReportKind.PROGRESS,
                step=global_step,
                epoch=self.state.epoch,
                samples_per_second=rate,
                eta_seconds=self._eta(),
            )

    def _eta(self) -> float | None:
        epoch_seconds = self.state.epoch_seconds
        if not epoch_seconds:
            return None
        return (self.config.epochs - self.state.epoch) * sum(epoch_seconds) / len(epoch_seconds)

    def _train_metrics(self, measured: TrainPass) -> dict[str, float]:
        return train_metrics(measured, self.trainee, self.data.task, distributed=self.dist.distributed)

    def _evaluate(self, split: str, shard: EvalSplit | None) -> dict[str, float]:
        if shard is None:
            return {}
        return evaluate_split(self.trainee, shard, split, self.data, self.components, self.dist.world_size)

    def _stop_agreed(self) -> bool:
        return ddp.any_rank(self.stop.requested, self.device) if self.dist.distributed else self.stop.requested

    def _run_epochs(self) -> ExitCode:
        config, state = self.config, self.state
        while state.epoch < config.epochs and not state.early_stopped:
            if self._stop_agreed():
                return self._terminated(save=not state.saved_now)
            self.train_sampler.set_epoch(state.epoch, state.step_in_epoch * config.batch_size)
            self._pass_started = time.perf_counter()
            measured = train_pass(
                self.trainee,
                self.train_loader,
                global_step=state.global_step,
                stop_requested=lambda: self.stop.requested,
                on_step=self._on_step,
                distributed=self.dist.distributed,
            )
            state.global_step += measured.steps
            if measured.first_large_grad is not None:
                step, norm = measured.first_large_grad
                exploding = diagnostics.exploding_gradients(
                    norm, step=step, epoch=state.epoch + 1, clip=config.grad_clip_norm
                )
                self._diagnose(state.diagnostics.unreported([exploding]))
            if measured.interrupted:
                state.step_in_epoch += measured.steps
                return self._terminated(save=True)
            state.epoch += 1
            state.step_in_epoch = 0
            state.epoch_seconds.append(measured.seconds)
            self._end_of_epoch(measured)
            self._save_best_checkpoint()  # every improving epoch, whatever the checkpoint interval
            last = state.epoch == config.epochs or state.early_stopped
            if last or state.epoch % self.settings.checkpoint_interval_epochs == 0:
                self._save_checkpoint()
            self._publish_epoch()
            if self.on_epoch_end is not None:
                self.on_epoch_end(self)
        return ExitCode.EARLY_STOPPED if state.early_stopped else ExitCode.SUCCESS

    def _end_of_epoch(self, measured: TrainPass) -> None:
        config, state = self.config, self.state
        metrics = self._train_metrics(measured)
        metrics.update(self._evaluate("val", self.val_split))
        if not math.isfinite(metrics.get("val_loss", 0.0)):
            raise NonFiniteLossError(
                metrics["val_loss"], state.global_step, measured.first_large_grad, split="validation"
            )
        state.last_metrics = metrics
        state.history.append({"epoch": float(state.epoch), **metrics})
        samples = max(measured.layer_norm_samples, 1)
        layer_norms = {name: total / samples for name, total in measured.layer_norm_sums.items()}
        chance = diagnostics.chance_accuracy(self.data.class_counts) if self.data.class_counts else None
        self._diagnose(
            state.diagnostics.after_epoch(
                epoch=state.epoch,
                train_loss=metrics["train_loss"],
                val_loss=metrics.get("val_loss"),
                train_accuracy=metrics.get("train_accuracy"),
                chance=chance,
                layer_grad_norms=layer_norms,
                learning_rate=config.learning_rate,
            )
        )
        objective_value = metrics.get(self.objective)
        if objective_value is None:
            raise PermanentError(
                f"earlyStopping.metric {self.objective!r} is not a metric this run produces; use one of: "
                + ", ".join(sorted(metrics))
            )
        min_delta = config.early_stopping.min_delta if config.early_stopping else 0.0
        state.best = state.best.update(objective_value, state.epoch, self.direction, min_delta)
        state.early_stopped = should_stop_early(state.best, config)
        if self.dist.is_main:
            shown = _format_metrics(metrics, ("train_", "val_"))
            log.info("epoch %d/%d: %s (%.0f samples/s, %.2f s)", state.epoch, config.epochs, shown,
                     metrics["samples_per_second"], measured.seconds)  # fmt: skip
            if state.early_stopped:
                log.info("early stopping: %s has not improved for %d epochs", self.objective, state.best.bad_epochs)

    def _publish_epoch(self) -> None:
        """Epoch report and gauges, after the epoch's checkpoint so the report can point at it."""
        state = self.state
        metrics = state.last_metrics
        if self.dist.is_main:
            self.reporter.send(
                ReportKind.EPOCH,
                step=state.global_step,
                epoch=state.epoch,
                metrics=metrics,
                samples_per_second=metrics.get("samples_per_second"),
                eta_seconds=self._eta(),
                checkpoint=state.last_checkpoint if state.saved_at == (state.epoch, 0) else None,
                best_checkpoint=state.best_checkpoint,
            )
            self.tracking.log_epoch(state.epoch, metrics)
        if self.metrics_exporter is not None:
            self.metrics_exporter.set_epoch(state.epoch, self.config.epochs, state.global_step)
            self.metrics_exporter.set_metrics(metrics)
            if self.device.type == "cuda":
                self.metrics_exporter.set_gpu_memory(
                    torch.cuda.memory_allocated(self.device), torch.cuda.max_memory_allocated(self.device)
                )

    def _terminated(self, *, save: bool) -> ExitCode:
        if save:
            self._save_checkpoint()
        state = self.state
        if self.dist.is_main:
            where = f"; checkpoint {state.last_checkpoint.path}" if state.last_checkpoint else ""
            log.warning("%s: stopped after %d epochs + %d steps%s", self.stop.reason or "stop requested",
                        state.epoch, state.step_in_epoch, where)  # fmt: skip
        return ExitCode.TERMINATED

    # ---- the end ---------------------------------------------------------------------------------------------

    def _final(self, code: ExitCode, reason: str = "") -> FinalResult:
        return results.final_result(
            code,
            reason,
            epochs_completed=self.state.epoch,
            objective_metric=self.objective,
            best=self.state.best,
            metrics=self.state.last_metrics,
            duration_seconds=time.monotonic() - self.started,
            history=self.state.history,
        )

    def _finish(self, code: ExitCode, reason: str = "") -> RunOutcome:
        state = self.state
        if code in (ExitCode.SUCCESS, ExitCode.EARLY_STOPPED):
            state.last_metrics = {**state.last_metrics, **self._evaluate("test", self.test_split)}
            if self.dist.is_main:
                log.info("test: %s", _format_metrics(state.last_metrics, ("test_",)))
        final = self._final(code, reason)
        self.clean_exit = code in (ExitCode.SUCCESS, ExitCode.EARLY_STOPPED, ExitCode.TERMINATED)
        self._publish(final)
        return RunOutcome(code, final, list(self.reported_diagnostics), list(state.history))

    def _publish(self, final: FinalResult) -> None:
        """Final report, result file, termination message: rank 0 always; other ranks only their failure."""
        settings = self.settings
        if self.dist.is_main:
            self.reporter.send(
                ReportKind.FINAL,
                step=self.state.global_step,
                epoch=self.state.epoch,
                metrics=final.metrics,
                diagnostics=self.reported_diagnostics[-64:],
                checkpoint=self.state.last_checkpoint,
                best_checkpoint=self.state.best_checkpoint,
                final=final,
            )
            self.tracking.finish(final)
            if settings.result_path is not None:
                document = results.result_document(final, self.reporter.identity.model_dump(mode="json", by_alias=True))
                results.write_result_file(settings.result_path, document)
        if self.dist.is_main or (final.status == FinalStatus.FAILED and self.dist.local_rank == 0):
            results.write_termination_message(settings.termination_log, results.termination_message(final))

    def execute(self) -> RunOutcome:
        """Run to the end and classify how it ended; teardown (reports, metrics server, group) always runs."""
        from trainsmart_trainer.data import DataError

        try:
            self._setup()
            return self._finish(self._run_epochs())
        except NonFiniteLossError as error:
            candidates: list[Diagnostic | None] = []
            if error.large_grad is not None:
                step, norm = error.large_grad
                clip = self.config.grad_clip_norm
                candidates.append(
                    diagnostics.exploding_gradients(norm, step=step, epoch=self.state.epoch + 1, clip=clip)
                )
            fatal = diagnostics.non_finite_loss(
                error.value,
                step=error.step,
                epoch=self.state.epoch + (1 if error.split == "training" else 0),
                learning_rate=self.config.learning_rate,
                clip=self.config.grad_clip_norm,
                split=error.split,
            )
            self._diagnose(self.state.diagnostics.unreported([*candidates, fatal]))
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
        self.tracking.close()
        delivered = self.reporter.close(self.report_close_timeout_s)
        if self.reporter.sender is not None and not delivered:
            log.warning("not every report reached %s; the result file and termination message have the outcome",
                        self.settings.report_url)  # fmt: skip
        if self.metrics_exporter is not None:
            self.metrics_exporter.close()
        if self.clean_exit:
            # After a failure peers may still sit in a collective; destroying the group could then hang.
            ddp.destroy_process_group()


def _format_metrics(metrics: dict[str, float], prefixes: tuple[str, ...]) -> str:
    """`name=value` pairs of the metrics whose names start with one of `prefixes`, for a log line."""
    return " ".join(f"{name}={value:.4g}" for name, value in metrics.items() if name.startswith(prefixes))
