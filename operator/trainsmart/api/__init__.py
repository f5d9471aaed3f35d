"""The trainsmart API (group trainsmart.dev, version v1alpha1): pydantic models that are the only source
of the CRD schemas, the operator's parsing and the admission webhook's validation."""

from trainsmart.api.common import API_VERSION, GROUP, VERSION, ApiModel, format_validation_error
from trainsmart.api.conditions import (
    Condition,
    ConditionStatus,
    DiagnosticSeverity,
    Reason,
    SweepConditionType,
    SweepPhase,
    TrainingJobConditionType,
    TrainingJobPhase,
    TrialPhase,
)
from trainsmart.api.paths import apply_parameters, resolve_path
from trainsmart.api.resources import (
    SWEEP_KIND,
    SWEEP_PLURAL,
    TRAININGJOB_KIND,
    TRAININGJOB_PLURAL,
    HyperparamSweep,
    TrainingJob,
)
from trainsmart.api.search_space import Parameter, ParameterType
from trainsmart.api.sweep_spec import AlgorithmName, EarlyStoppingRule, Goal, HyperparamSweepSpec, RetentionPolicy
from trainsmart.api.sweep_status import BestTrial, HyperparamSweepStatus, ParetoTrial, TrialCounts, TrialRecord
from trainsmart.api.trainingjob_spec import CheckpointSpec, CleanPodPolicy, RunPolicy, TrainerSpec, TrainingJobSpec
from trainsmart.api.trainingjob_status import TrainingJobStatus

__all__ = [
    "API_VERSION",
    "GROUP",
    "SWEEP_KIND",
    "SWEEP_PLURAL",
    "TRAININGJOB_KIND",
    "TRAININGJOB_PLURAL",
    "VERSION",
    "AlgorithmName",
    "ApiModel",
    "BestTrial",
    "CheckpointSpec",
    "CleanPodPolicy",
    "Condition",
    "ConditionStatus",
    "DiagnosticSeverity",
    "EarlyStoppingRule",
    "Goal",
    "HyperparamSweep",
    "HyperparamSweepSpec",
    "HyperparamSweepStatus",
    "Parameter",
    "ParameterType",
    "ParetoTrial",
    "Reason",
    "RetentionPolicy",
    "RunPolicy",
    "SweepConditionType",
    "SweepPhase",
    "TrainerSpec",
    "TrainingJob",
    "TrainingJobConditionType",
    "TrainingJobPhase",
    "TrainingJobSpec",
    "TrainingJobStatus",
    "TrialCounts",
    "TrialPhase",
    "TrialRecord",
    "apply_parameters",
    "format_validation_error",
    "resolve_path",
]
