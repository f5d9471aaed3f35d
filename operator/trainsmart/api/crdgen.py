"""Generate the CRDs from the pydantic models, or check that the committed files match them.

    python -m trainsmart.api.crdgen write   # regenerate crds/ and charts/trainsmart/crds/
    python -m trainsmart.api.crdgen check   # exit 1, naming the files, when they drifted from the models

The models are the only source of the schemas; the YAML is committed so that `kubectl apply -f crds/`,
Helm and GitOps tools need no Python. The output is deterministic (sorted keys, fixed width), so a drift
check is a byte comparison and a model change shows up as a readable diff.

Two flavours, differing only in what happens to a field the schema does not declare (docs/validation.md):
- `crds/` and the chart (every Kubernetes version): the spec keeps unknown fields, so a misspelt field
  reaches the admission webhook, which refuses it by path whatever the client; where no webhook runs, the
  operator marks the object InvalidSpec instead of training without the field;
- `crds/strict/` (Kubernetes >= 1.25, for clusters that install the CRDs without the webhook): the
  apiserver prunes unknown fields, and its strict field validation refuses them for clients that ask for it
  (kubectl apply, server-side apply, dry-runs); other clients lose them with a warning.
Both carry the same CEL rules, which servers older than 1.25 ignore.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import yaml
from pydantic import BaseModel

from trainsmart.api.common import GROUP, VERSION
from trainsmart.api.resources import SWEEP_KIND, SWEEP_PLURAL, TRAININGJOB_KIND, TRAININGJOB_PLURAL
from trainsmart.api.schema import structural_schema
from trainsmart.api.sweep_spec import HyperparamSweepSpec
from trainsmart.api.sweep_status import HyperparamSweepStatus
from trainsmart.api.trainingjob_spec import TrainingJobSpec
from trainsmart.api.trainingjob_status import TrainingJobStatus

CATEGORY: Final = "trainsmart"
OUTPUT_DIRS: Final = (Path("crds"), Path("charts/trainsmart/crds"))
STRICT_DIR: Final = Path("crds/strict")
HEADER: Final = (
    "# GENERATED FILE - do not edit. Source: the pydantic models in operator/trainsmart/api/ and\n"
    "# trainer_image/trainsmart_trainer/config.py.\n"
    "# Regenerate with `make crds` (python -m trainsmart.api.crdgen write); `make crds-check` finds drift.\n"
)


def _column(name: str, type_: str, json_path: str, description: str, priority: int = 0) -> dict[str, Any]:
    column: dict[str, Any] = {"name": name, "type": type_, "jsonPath": json_path, "description": description}
    if priority:
        column["priority"] = priority
    return column


_AGE = _column("Age", "date", ".metadata.creationTimestamp", "Time since the object was created.")
# Cost only in the wide view (-o wide): without a configured price every row would read <none>.
_COST = _column(
    "Cost", "string", ".status.costHeadline", "Estimated cost of the GPU time (with a GPU price).", priority=1
)
# Every column a person reads a number in points at a string made for it (a headline): a number column
# prints a float with all its digits (0.9791666666666666).

TRAININGJOB_COLUMNS: Final = [
    _column("Phase", "string", ".status.phase", "Pending, Running, Restarting, Succeeded, Failed or Suspended."),
    _column("Replicas", "integer", ".spec.replicas", "Pods that train together."),
    _column("GPUs", "integer", ".spec.gpusPerReplica", "GPUs per replica."),
    _column("Progress", "string", ".status.progress.headline", "Epochs completed of the total, with the percent."),
    _column("Metric", "string", ".status.metrics.headline", "Latest value of the objective metric."),
    _column("Restarts", "integer", ".status.restarts", "Whole-job restarts so far."),
    _AGE,
    _COST,
    _column("Queue", "string", ".spec.queueName", "Kueue LocalQueue.", priority=1),
]
SWEEP_COLUMNS: Final = [
    _column("Phase", "string", ".status.phase", "Pending, Running, Succeeded, Failed or Suspended."),
    _column("Done", "integer", ".status.counts.finished", "Finished trials."),
    _column("Max", "integer", ".status.counts.planned", "Trials the sweep runs at most."),
    _column("Best", "string", ".status.bestTrial.headline", "Best objective value so far."),
    _AGE,
    _column("Objective", "string", ".spec.objective.metric", "The metric being optimized.", priority=1),
    _column("Running", "integer", ".status.counts.running", "Trials running now.", priority=1),
    _column(
        "Front", "integer", ".status.paretoFrontSize", "Multi-objective sweeps: trials on the Pareto front.", priority=1
    ),
    _COST,
]


def _root_schema(
    kind: str, spec: type[BaseModel], status: type[BaseModel], description: str, *, keep_unknown_fields: bool
) -> dict[str, Any]:
    spec_schema = structural_schema(spec, keep_unknown_fields=keep_unknown_fields)
    spec_schema["description"] = f"Desired state of the {kind}."
    status_schema = structural_schema(status, keep_defaults=False)
    status_schema["description"] = f"Observed state of the {kind}, written by the operator."
    return {
        "type": "object",
        "description": description,
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string", "description": "API version: trainsmart.dev/v1alpha1."},
            "kind": {"type": "string", "description": f"Kind: {kind}."},
            "metadata": {"type": "object"},
            "spec": spec_schema,
            "status": status_schema,
        },
    }


def _crd(
    *,
    kind: str,
    plural: str,
    short_names: list[str],
    schema: dict[str, Any],
    columns: list[dict[str, Any]],
) -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{plural}.{GROUP}",
            "labels": {"app.kubernetes.io/name": "trainsmart", "app.kubernetes.io/part-of": "trainsmart"},
        },
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": kind,
                "listKind": f"{kind}List",
                "plural": plural,
                "singular": kind.lower(),
                "shortNames": short_names,
                "categories": [CATEGORY],
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": schema},
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": columns,
                }
            ],
        },
    }


def build_crds(*, keep_unknown_fields: bool = True) -> dict[str, dict[str, Any]]:
    """File name -> CRD object, for both kinds; `keep_unknown_fields=False` gives the strict flavour."""
    trainingjob = _crd(
        kind=TRAININGJOB_KIND,
        plural=TRAININGJOB_PLURAL,
        short_names=["tj"],
        schema=_root_schema(
            TRAININGJOB_KIND,
            TrainingJobSpec,
            TrainingJobStatus,
            "A distributed PyTorch training run: replicas x GPUs of a trainer, with checkpoints and live status.",
            keep_unknown_fields=keep_unknown_fields,
        ),
        columns=TRAININGJOB_COLUMNS,
    )
    sweep = _crd(
        kind=SWEEP_KIND,
        plural=SWEEP_PLURAL,
        short_names=["hps", "sweep"],
        schema=_root_schema(
            SWEEP_KIND,
            HyperparamSweepSpec,
            HyperparamSweepStatus,
            "A hyperparameter search whose trials are TrainingJobs made from a template.",
            keep_unknown_fields=keep_unknown_fields,
        ),
        columns=SWEEP_COLUMNS,
    )
    return {f"{TRAININGJOB_PLURAL}.{GROUP}.yaml": trainingjob, f"{SWEEP_PLURAL}.{GROUP}.yaml": sweep}


def render(crd: dict[str, Any]) -> str:
    """Stable YAML: sorted keys and a fixed line width, so equal models give byte-equal files."""
    body = yaml.safe_dump(crd, sort_keys=True, default_flow_style=False, width=100, allow_unicode=False)
    return HEADER + "---\n" + body


def rendered_files() -> dict[Path, str]:
    """Relative output path -> file content, for every output directory."""
    texts = {name: render(crd) for name, crd in build_crds().items()}
    files = {directory / name: text for directory in OUTPUT_DIRS for name, text in texts.items()}
    strict = {STRICT_DIR / name: render(crd) for name, crd in build_crds(keep_unknown_fields=False).items()}
    return files | strict


def write(root: Path) -> list[Path]:
    """Write every CRD file under `root`; returns the files whose content changed."""
    changed = []
    for relative, text in rendered_files().items():
        target = root / relative
        if not target.exists() or target.read_text() != text:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
            changed.append(relative)
    return changed


def check(root: Path) -> list[Path]:
    """The files under `root` that are missing or differ from what the models generate."""
    return [
        relative
        for relative, text in rendered_files().items()
        if not (root / relative).exists() or (root / relative).read_text() != text
    ]


def _default_root() -> Path:
    # In a source checkout the repository root is four levels up; installed elsewhere, use the cwd.
    candidate = Path(__file__).resolve().parents[3]
    return candidate if (candidate / "pyproject.toml").exists() else Path.cwd()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trainsmart.api.crdgen", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["write", "check"], help="write the files, or check them for drift")
    parser.add_argument("--root", type=Path, default=None, help="repository root (default: this checkout)")
    args = parser.parse_args(argv)
    root: Path = args.root or _default_root()
    if args.command == "write":
        changed = write(root)
        print("\n".join(f"wrote {path}" for path in changed) or "CRDs already up to date")
        return 0
    drifted = check(root)
    if drifted:
        print("CRDs drifted from the models (run `make crds`):", file=sys.stderr)
        print("\n".join(f"  {path}" for path in drifted), file=sys.stderr)
        return 1
    print("CRDs match the models")
    return 0


if __name__ == "__main__":
    sys.exit(main())
