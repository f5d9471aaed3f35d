"""The packaged trainer's typed configuration (`spec.trainer.config` of a TrainingJob).

It lives with the trainer, and needs only pydantic, because two programs read it: the trainer (which must
start without the operator installed) and the operator, which embeds this schema in the TrainingJob CRD and
validates it at admission. So a typo in `learningRate`, or a model that cannot read the chosen dataset, is
rejected by `kubectl apply`, not minutes later inside a pod.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Final, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

from trainsmart_trainer.contract import ObjectiveDirection

MAX_PATH_CHARS: Final = 4096
"""Linux's PATH_MAX: no longer path can be opened (a character is at least one byte)."""


class _ConfigModel(BaseModel):
    """camelCase on the wire, snake_case in Python, unknown keys rejected (typos must not pass silently)."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


def _only_for(model: BaseModel, owner: str, allowed: dict[str, frozenset[str]], choice: str) -> None:
    """Reject options explicitly set that do not apply to `choice` (e.g. `textColumn` for a CSV table)."""
    for name in sorted(model.model_fields_set):
        if getattr(model, name) is None:
            continue
        users = sorted(key for key, fields in allowed.items() if name in fields)
        if users and choice not in users:
            alias = to_camel(name)
            raise ValueError(f"{alias} applies only to {owner} {' or '.join(users)}; remove it or change {owner}")


class ModelName(StrEnum):
    """Network architectures the packaged trainer builds."""

    MLP = "mlp"
    CNN = "cnn"
    RESNET = "resnet"
    LSTM = "lstm"
    TRANSFORMER = "transformer"
    MF = "mf"


class DatasetName(StrEnum):
    """Datasets the packaged trainer can load."""

    DIGITS = "digits"
    SYNTHETIC = "synthetic"
    TABULAR_CSV = "tabular-csv"
    TEXT_CSV = "text-csv"
    IMAGES = "images"
    RATINGS = "ratings"


class Task(StrEnum):
    """What a tabular or synthetic dataset's target is."""

    CLASSIFICATION = "classification"
    REGRESSION = "regression"


# Which models can read which dataset; the trainer refuses anything else, so admission does too.
COMPATIBLE_MODELS: Final[dict[DatasetName, frozenset[ModelName]]] = {
    DatasetName.DIGITS: frozenset({ModelName.MLP, ModelName.CNN, ModelName.RESNET}),
    DatasetName.SYNTHETIC: frozenset({ModelName.MLP}),
    DatasetName.TABULAR_CSV: frozenset({ModelName.MLP}),
    DatasetName.TEXT_CSV: frozenset({ModelName.LSTM, ModelName.TRANSFORMER}),
    DatasetName.IMAGES: frozenset({ModelName.CNN, ModelName.RESNET, ModelName.MLP}),
    DatasetName.RATINGS: frozenset({ModelName.MF}),
}

_MODEL_OPTIONS: Final = {
    ModelName.MLP.value: frozenset({"hidden_sizes", "hidden_width", "hidden_layers"}),
    ModelName.CNN.value: frozenset({"hidden_sizes"}),
    ModelName.RESNET.value: frozenset({"num_layers"}),
    ModelName.LSTM.value: frozenset({"hidden_sizes", "embedding_dim", "num_layers"}),
    ModelName.TRANSFORMER.value: frozenset({"embedding_dim", "num_heads", "num_layers"}),
    ModelName.MF.value: frozenset({"embedding_dim", "hidden_sizes"}),
}


class ModelConfig(_ConfigModel):
    """The network to train; size options left unset take the trainer's per-model defaults."""

    name: ModelName = Field(default=ModelName.MLP, description="Architecture to build.")
    hidden_sizes: list[Annotated[int, Field(ge=1, le=65536)]] | None = Field(
        default=None,
        min_length=1,
        max_length=16,
        description="Layer widths: hidden layers (mlp), conv channels per block (cnn), the hidden size "
        "of each recurrent layer (lstm; one entry is repeated numLayers times), or the MLP tower over the user "
        "and item embeddings (mf: neural collaborative filtering; unset: plain matrix factorisation).",
    )
    hidden_width: int | None = Field(
        default=None,
        ge=1,
        le=65536,
        description="The width of every hidden layer (mlp), instead of hiddenSizes: a scalar a sweep can search "
        "(`path: trainer.config.model.hiddenWidth`). hiddenLayers layers of it; one when hiddenLayers is unset.",
    )
    hidden_layers: int | None = Field(
        default=None,
        ge=1,
        le=16,
        description="How many hidden layers of hiddenWidth (mlp); needs hiddenWidth. Default 1.",
    )
    embedding_dim: int | None = Field(
        default=None,
        ge=1,
        le=8192,
        description="Token embedding width (lstm, transformer) or latent factors (mf).",
    )
    num_heads: int | None = Field(
        default=None, ge=1, le=64, description="Attention heads (transformer); must divide embeddingDim."
    )
    num_layers: int | None = Field(
        default=None,
        ge=1,
        le=152,
        description="Depth: encoder layers (transformer), stacked layers (lstm), residual blocks (resnet).",
    )

    @model_validator(mode="after")
    def _check_options(self) -> Self:
        _only_for(self, "model.name", _MODEL_OPTIONS, self.name.value)
        self._check_width_depth()
        if self.num_heads and self.embedding_dim and self.embedding_dim % self.num_heads:
            raise ValueError(f"embeddingDim ({self.embedding_dim}) must be a multiple of numHeads ({self.num_heads})")
        sizes, layers = self.hidden_sizes or [], self.num_layers
        if self.name == ModelName.LSTM and len(sizes) > 1 and layers is not None and layers != len(sizes):
            raise ValueError(
                f"hiddenSizes has {len(sizes)} entries but numLayers is {layers}; give one size per layer, "
                "or a single size to repeat"
            )
        return self

    def _check_width_depth(self) -> None:
        """The scalar pair and the list describe the same layers: both set, one would silently lose."""
        scalar = [to_camel(name) for name in ("hidden_width", "hidden_layers") if getattr(self, name) is not None]
        if scalar and self.hidden_sizes is not None:
            raise ValueError(
                f"{' and '.join(scalar)} and hiddenSizes both size the hidden layers; set either hiddenSizes "
                "(one width per layer) or hiddenWidth with hiddenLayers (the same width repeated), not both"
            )
        if self.hidden_layers is not None and self.hidden_width is None:
            raise ValueError("hiddenLayers needs hiddenWidth (the width of each of those layers); set it too")

    def mlp_hidden_sizes(self) -> list[int] | None:
        """The MLP's hidden widths from either form (None: the trainer's default), so the model builder
        reads one list whichever way the user (or a sweep) sized the network."""
        if self.hidden_width is not None:
            return [self.hidden_width] * (self.hidden_layers or 1)
        return list(self.hidden_sizes) if self.hidden_sizes is not None else None


_DATASET_OPTIONS: Final = {
    DatasetName.SYNTHETIC.value: frozenset(
        {"num_samples", "num_features", "num_classes", "task", "noise", "imbalance"},
    ),
    DatasetName.TABULAR_CSV.value: frozenset({"path", "target_column", "feature_columns", "task"}),
    DatasetName.TEXT_CSV.value: frozenset(
        {"path", "target_column", "text_column", "max_length", "vocab_size", "min_frequency"},
    ),
    DatasetName.IMAGES.value: frozenset({"path", "image_size", "augment"}),
    DatasetName.RATINGS.value: frozenset(
        {"path", "user_column", "item_column", "rating_column", "relevance_threshold"},
    ),
}
_NEEDS_PATH: Final = frozenset(
    {DatasetName.TABULAR_CSV, DatasetName.TEXT_CSV, DatasetName.IMAGES, DatasetName.RATINGS},
)


class DatasetConfig(_ConfigModel):
    """The data to train on. Options apply per dataset; setting one another dataset uses is an error."""

    name: DatasetName = Field(default=DatasetName.DIGITS, description="Which loader to use.")
    path: str | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_PATH_CHARS,
        description="File or directory inside the pod, usually on a volume from spec.volumeMounts: a CSV file "
        "(tabular-csv, text-csv), a MovieLens u.data or ratings.csv file (ratings), an .npz file or a directory "
        "of MNIST-style IDX files (images). Required for tabular-csv, text-csv, images, ratings. At most "
        f"{MAX_PATH_CHARS} characters (Linux's PATH_MAX).",
    )
    task: Task | None = Field(
        default=None,
        description="Whether the target is a class or a number (tabular-csv, synthetic). Default classification.",
    )
    target_column: str | None = Field(
        default=None,
        min_length=1,
        description="Column to predict: the class label, or the number for task regression (tabular-csv, "
        "text-csv). Default `label`.",
    )
    feature_columns: list[str] | None = Field(
        default=None,
        min_length=1,
        max_length=4096,
        description="Input columns (tabular-csv). Default: every column except targetColumn. Numeric columns are "
        "standardised and text columns one-hot encoded, both fitted on the training split only; an empty or NA "
        "cell becomes the training mean (numeric) or all zeros (text), and rows without a target are dropped.",
    )
    text_column: str | None = Field(
        default=None, min_length=1, description="Column holding the text (text-csv). Default `text`."
    )
    max_length: int | None = Field(
        default=None, ge=1, le=8192, description="Tokens kept per text sample (text-csv). Default 128."
    )
    vocab_size: int | None = Field(
        default=None,
        ge=3,
        le=1_000_000,
        description="Vocabulary size including the padding and unknown tokens (text-csv). Default 20000.",
    )
    min_frequency: int | None = Field(
        default=None,
        ge=1,
        le=1_000_000,
        description="Tokens seen fewer times than this in the training split map to the unknown token "
        "(text-csv). Default 2.",
    )
    image_size: int | None = Field(
        default=None,
        ge=8,
        le=1024,
        description="Resize images to this many pixels square (images). Default: keep the stored size.",
    )
    augment: bool | None = Field(
        default=None,
        description="Random shifts (up to a tenth of the side) and light Gaussian noise on training images "
        "(images). Default true.",
    )
    user_column: str | None = Field(
        default=None,
        min_length=1,
        description="User id column of a ratings.csv file (ratings). Default `userId`; u.data files have "
        "no header and need none of the column options.",
    )
    item_column: str | None = Field(
        default=None, min_length=1, description="Item id column of a ratings.csv file (ratings). Default `movieId`."
    )
    rating_column: str | None = Field(
        default=None, min_length=1, description="Rating column of a ratings.csv file (ratings). Default `rating`."
    )
    relevance_threshold: float | None = Field(
        default=None,
        description="Ratings at or above this are relevant for precision@k and recall@k (ratings). Default: the "
        "lowest rating plus three quarters of the rating range (4 on a 1-5 scale).",
    )
    num_samples: int | None = Field(
        default=None, ge=10, le=10_000_000, description="Rows to generate (synthetic). Default 10000."
    )
    num_features: int | None = Field(
        default=None, ge=1, le=10_000, description="Input features to generate (synthetic). Default 20."
    )
    num_classes: int | None = Field(
        default=None, ge=2, le=1000, description="Classes to generate (synthetic classification). Default 2."
    )
    noise: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description="Synthetic noise: the fraction of labels assigned at random (classification), or the noise "
        "standard deviation relative to the target's (regression). Default 0.01.",
    )
    imbalance: float | None = Field(
        default=None,
        ge=1,
        le=1000,
        description="Ratio of the most to the least frequent class, the classes in between falling off "
        "geometrically (synthetic classification). Default 1: balanced.",
    )

    @model_validator(mode="after")
    def _check_options(self) -> Self:
        _only_for(self, "dataset.name", _DATASET_OPTIONS, self.name.value)
        if self.name in _NEEDS_PATH and self.path is None:
            raise ValueError(f"path is required for dataset {self.name.value}; set the file or directory")
        if self.num_classes is not None and self.task == Task.REGRESSION:
            raise ValueError("numClasses does not apply to task regression; remove it")
        if self.imbalance is not None and self.task == Task.REGRESSION:
            raise ValueError("imbalance does not apply to task regression; remove it")
        return self


class OptimizerName(StrEnum):
    """Optimizers from torch.optim the trainer supports."""

    SGD = "sgd"
    ADAM = "adam"
    ADAMW = "adamw"
    RMSPROP = "rmsprop"


class OptimizerConfig(_ConfigModel):
    """The optimizer; the learning rate and weight decay are top-level so sweeps can reach them easily."""

    name: OptimizerName = Field(default=OptimizerName.ADAM, description="Which optimizer.")
    momentum: float | None = Field(
        default=None, ge=0, lt=1, description="Momentum (sgd, rmsprop only). Default 0.9 for sgd, 0 otherwise."
    )
    nesterov: bool = Field(default=False, description="Use Nesterov momentum (sgd only).")

    @model_validator(mode="after")
    def _check_options(self) -> Self:
        momentum_users = {OptimizerName.SGD, OptimizerName.RMSPROP}
        if self.momentum is not None and self.name not in momentum_users:
            raise ValueError(f"momentum does not apply to {self.name.value}; remove it or use sgd/rmsprop")
        if self.nesterov and self.name != OptimizerName.SGD:
            raise ValueError("nesterov applies only to sgd; remove it or set name: sgd")
        return self


class LrScheduleName(StrEnum):
    """Learning-rate schedules; `warmup` ramps linearly for warmupEpochs, then holds the rate."""

    NONE = "none"
    STEP = "step"
    COSINE = "cosine"
    ONECYCLE = "onecycle"
    WARMUP = "warmup"


_SCHEDULE_OPTIONS: Final = {
    LrScheduleName.STEP.value: frozenset({"step_epochs", "gamma"}),
    LrScheduleName.COSINE.value: frozenset({"min_learning_rate", "warmup_epochs"}),
    LrScheduleName.ONECYCLE.value: frozenset({"max_learning_rate"}),
    LrScheduleName.WARMUP.value: frozenset({"warmup_epochs"}),
}


class LrScheduleConfig(_ConfigModel):
    """How the learning rate changes over epochs."""

    name: LrScheduleName = Field(default=LrScheduleName.NONE, description="Which schedule.")
    step_epochs: int | None = Field(default=None, ge=1, description="step: epochs between decays. Default 10.")
    gamma: float | None = Field(
        default=None, gt=0, lt=1, description="step: factor applied at each decay. Default 0.1."
    )
    warmup_epochs: int | None = Field(
        default=None,
        ge=0,
        description="warmup, cosine: epochs of linear ramp from 0 to learningRate. Default 1 (warmup), 0 (cosine).",
    )
    min_learning_rate: float | None = Field(
        default=None, ge=0, description="cosine: the rate reached at the last epoch. Default 0."
    )
    max_learning_rate: float | None = Field(
        default=None, gt=0, description="onecycle: peak rate. Default 10 x learningRate."
    )

    @model_validator(mode="after")
    def _check_options(self) -> Self:
        # Per-schedule options have no schema default on purpose: a default would be filled in for every
        # schedule and then trip this very check.
        _only_for(self, "lrSchedule.name", _SCHEDULE_OPTIONS, self.name.value)
        if self.name == LrScheduleName.WARMUP and self.warmup_epochs == 0:
            raise ValueError("warmup needs warmupEpochs >= 1")
        return self


class ClassWeightsMode(StrEnum):
    """How classes are weighted in the loss."""

    NONE = "none"
    BALANCED = "balanced"
    EXPLICIT = "explicit"


class ClassWeightsConfig(_ConfigModel):
    """Per-class loss weights, for imbalanced classification."""

    mode: ClassWeightsMode = Field(
        default=ClassWeightsMode.NONE,
        description="none: equal; balanced: inverse class frequency; explicit: the weights list.",
    )
    weights: list[Annotated[float, Field(gt=0)]] | None = Field(
        default=None,
        min_length=2,
        max_length=1000,
        description="One weight per class, in class-index order (mode explicit only).",
    )

    @model_validator(mode="after")
    def _check_weights(self) -> Self:
        explicit = self.mode == ClassWeightsMode.EXPLICIT
        if explicit and self.weights is None:
            raise ValueError("mode explicit needs weights: one positive number per class")
        if not explicit and self.weights is not None:
            raise ValueError("weights applies only to mode explicit; remove it or set mode: explicit")
        return self


class MetricMode(StrEnum):
    """Whether a metric improves downwards (loss) or upwards (accuracy), as a user writes it in the config.

    Only the config speaks `min`/`max` (the CRD schema pins those spellings); everything that compares
    values works in the contract's `ObjectiveDirection`, which the operator's sweeps share, via `direction`.
    """

    MIN = "min"
    MAX = "max"

    @property
    def direction(self) -> ObjectiveDirection:
        return ObjectiveDirection.of(self.value)


class EarlyStoppingConfig(_ConfigModel):
    """Stop a run whose validation metric stopped improving (within one job, unlike sweep early stopping)."""

    metric: str = Field(default="val_loss", min_length=1, max_length=128, description="Metric to watch, e.g. val_loss.")
    mode: MetricMode = Field(default=MetricMode.MIN, description="min if lower is better, max otherwise.")
    patience: int = Field(default=5, ge=1, le=1000, description="Epochs without improvement before stopping.")
    min_delta: float = Field(default=0.0, ge=0, description="Smallest change that counts as improvement.")


class MixedPrecision(StrEnum):
    """Autocast dtype on GPUs; ignored (with a log line) when training on the CPU."""

    NONE = "none"
    FP16 = "fp16"
    BF16 = "bf16"


class TrainerConfig(_ConfigModel):
    """Everything the packaged trainer needs: model, data and hyperparameters."""

    model: ModelConfig = Field(default_factory=ModelConfig, description="The network.")
    dataset: DatasetConfig = Field(default_factory=DatasetConfig, description="The data.")
    epochs: int = Field(default=10, ge=1, le=100_000, description="Passes over the training data.")
    batch_size: int = Field(default=64, ge=1, le=1_048_576, description="Samples per step, per process.")
    learning_rate: float = Field(default=1e-3, gt=0, le=10, description="Base learning rate.")
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig, description="The optimizer.")
    lr_schedule: LrScheduleConfig = Field(default_factory=LrScheduleConfig, description="Learning-rate schedule.")
    weight_decay: float = Field(default=0.0, ge=0, le=1, description="L2 penalty (decoupled for adamw).")
    l1_penalty: float = Field(default=0.0, ge=0, le=1, description="L1 penalty on the weights.")
    dropout: float = Field(default=0.0, ge=0, lt=1, description="Dropout probability.")
    grad_clip_norm: float | None = Field(
        default=None, gt=0, description="Clip gradients to this global L2 norm. Unset: no clipping."
    )
    class_weights: ClassWeightsConfig = Field(
        default_factory=ClassWeightsConfig, description="Loss weights per class (classification only)."
    )
    label_smoothing: float = Field(
        default=0.0, ge=0, lt=1, description="Label smoothing for the cross-entropy loss (classification)."
    )
    early_stopping: EarlyStoppingConfig | None = Field(
        default=None, description="Stop when the watched metric stops improving. Unset: train all epochs."
    )
    validation_split: float = Field(
        default=0.2, ge=0, lt=1, description="Fraction of the data held out for validation metrics."
    )
    seed: int = Field(default=0, ge=0, le=2**32 - 1, description="Seed for data splits and initialization.")
    mixed_precision: MixedPrecision = Field(
        default=MixedPrecision.NONE, description="Automatic mixed precision on GPUs."
    )
    data_loader_workers: int = Field(
        default=0, ge=0, le=64, description="DataLoader worker processes per training process."
    )
    checkpoint_every_epochs: int | None = Field(
        default=None,
        ge=1,
        description="Save a checkpoint every N epochs. Unset: the TrainingJob's spec.checkpoint.intervalEpochs.",
    )
    tensorboard: bool = Field(
        default=True,
        description="Write TensorBoard event files (per-epoch metrics, learning rate, throughput, hyperparameters) "
        "into the tensorboard directory of the checkpoint volume; needs spec.checkpoint. false: none.",
    )

    @model_validator(mode="after")
    def _check_combinations(self) -> Self:
        allowed = COMPATIBLE_MODELS[self.dataset.name]
        if self.model.name not in allowed:
            names = ", ".join(sorted(model.value for model in allowed))
            raise ValueError(
                f"model {self.model.name.value} cannot train on dataset {self.dataset.name.value}; use one of: {names}"
            )
        if self.early_stopping and self.early_stopping.metric.startswith("val") and self.validation_split == 0:
            raise ValueError(
                f"earlyStopping watches {self.early_stopping.metric} but validationSplit is 0; set validationSplit > 0"
            )
        regression = self.dataset.task == Task.REGRESSION or self.dataset.name == DatasetName.RATINGS
        if regression and (self.class_weights.mode != ClassWeightsMode.NONE or self.label_smoothing):
            raise ValueError("classWeights and labelSmoothing apply to classification only; remove them")
        return self
