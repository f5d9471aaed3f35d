"""The examples of your own training code (examples/custom/) as the e2e tests apply them.

A user creates the script's ConfigMap from the file (`kubectl create configmap --from-file`), then applies
the manifest; the tests do the same, changing only what makes a run small (epochs, data) through the
script's own command-line flags.
"""

from __future__ import annotations

import copy
from typing import Any

import yaml
from kubernetes import client

from support.paths import REPO

EXAMPLES = REPO / "examples" / "custom"


def example_spec(file: str) -> dict[str, Any]:
    """The spec of the one object in `examples/custom/<file>` (a copy: tests change it)."""
    (doc,) = [doc for doc in yaml.safe_load_all((EXAMPLES / file).read_text()) if doc]
    return copy.deepcopy(doc["spec"])


def create_script_configmap(api: client.ApiClient, namespace: str, spec: dict[str, Any], script: str) -> None:
    """What `kubectl create configmap <name> --from-file=examples/custom/<script>` creates, named as the
    spec's ConfigMap volume says."""
    (volume,) = [volume for volume in spec["volumes"] if "configMap" in volume]
    body = {"metadata": {"name": volume["configMap"]["name"]}, "data": {script: (EXAMPLES / script).read_text()}}
    client.CoreV1Api(api).create_namespaced_config_map(namespace, body)


def set_args(trainer: dict[str, Any], **values: str) -> None:
    """Replace `--name value` pairs of the trainer's args (and add the missing ones)."""
    args = list(trainer["args"])
    for name, value in values.items():
        flag = f"--{name.replace('_', '-')}"
        if flag in args:
            args[args.index(flag) + 1] = value
        else:
            args += [flag, value]
    trainer["args"] = args
