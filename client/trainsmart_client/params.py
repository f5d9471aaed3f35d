"""A trial's parameters, however the operator handed them to the pod.

The operator writes every sweep parameter twice: all of them as one JSON object in the file named by
TRAINSMART_PARAMS_FILE (exact names and types), and each as TRAINSMART_PARAM_<NAME> (upper-cased,
non-alphanumerics as `_`, the value as it is substituted into commands: JSON for numbers, booleans, lists
and objects, bare text for strings). The file wins; a variable adds a parameter the file lacks (under its
lower-cased name, since the original spelling is lost in the variable's name).
"""

from __future__ import annotations

import json
import logging
import os
import re
from typing import Any, Mapping

from trainsmart_client.job_env import PARAM_PREFIX, PARAMS_FILE

log = logging.getLogger(__name__)

_NOT_ALNUM = re.compile(r"[^A-Za-z0-9]")


def env_name(parameter: str) -> str:
    """The variable that carries `parameter` (`hidden.width` -> TRAINSMART_PARAM_HIDDEN_WIDTH)."""
    return PARAM_PREFIX + _NOT_ALNUM.sub("_", parameter.upper())


def decode_value(text: str) -> Any:
    """A variable's value: JSON when it is a JSON number, boolean, null, list or object; else the text."""
    try:
        value = json.loads(text)
    except ValueError:
        return text
    return text if isinstance(value, str) else value


def read_params(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Every parameter of this trial; empty outside a sweep (a plain TrainingJob or a laptop run)."""
    env = os.environ if env is None else env
    params: dict[str, Any] = {}
    path = env.get(PARAMS_FILE)
    if path:
        try:
            with open(path, encoding="utf-8") as handle:
                loaded = json.load(handle)
        except (OSError, ValueError) as error:
            log.warning("%s=%s cannot be read as JSON: %s", PARAMS_FILE, path, error)
        else:
            if isinstance(loaded, dict):
                params.update(loaded)
            else:
                log.warning("%s=%s holds no JSON object", PARAMS_FILE, path)
    known = {env_name(name) for name in params}
    for name, text in env.items():
        if name.startswith(PARAM_PREFIX) and len(name) > len(PARAM_PREFIX) and name not in known:
            params[name[len(PARAM_PREFIX) :].lower()] = decode_value(text)
    return params
