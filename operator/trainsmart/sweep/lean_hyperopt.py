"""hyperopt loaded without ATPE, the one algorithm module that pulls in scipy.stats (the operator's memory).

hyperopt 0.3.0's package `__init__` imports every algorithm it ships. `hyperopt.atpe` imports scipy.stats:
some 500 modules, about 45 MiB of the operator's RSS (hyperopt costs 83 MiB with it, 38 MiB without), and
the operator never runs ATPE: sweeps draw with TPE, random or anneal (`AlgorithmName`). So before
hyperopt's first import an empty module takes atpe's place in `sys.modules`, where the package's
`from . import atpe` finds it. Code in this process that did use ATPE would fail at once on the missing
attribute, never silently; nothing in trainsmart does, and the operator process runs nothing else.

`import_hyperopt()` must run before any `from hyperopt import ...` (each function of `suggest` and `space`
calls it first); once hyperopt is imported it does nothing. The pin in pyproject.toml keeps this in step with
the package's `__init__`; the unit tests import hyperopt through here and draw real TPE points.
"""

from __future__ import annotations

import sys
import types
from typing import Final

SKIPPED_MODULE: Final = "hyperopt.atpe"


def import_hyperopt() -> None:
    """Import hyperopt with `hyperopt.atpe` replaced by an empty module (once per process)."""
    if "hyperopt" not in sys.modules:
        placeholder = types.ModuleType(SKIPPED_MODULE, "Not loaded by trainsmart: see trainsmart.sweep.lean_hyperopt.")
        sys.modules.setdefault(SKIPPED_MODULE, placeholder)
    import hyperopt  # noqa: F401 - the import is the point
