"""`trainsmart operator` and `kopf run -m trainsmart.main` run the same operator.

Pins:
- every flag has a `TRAINSMART_OPERATOR_*` variable, and the same settings as flags or as variables give
  equal `OperatorOptions` (webhook, Service reference, namespaces, peering and the active-pod label,
  admission-only mode, trainer defaults);
- `register_operator` registers the same handlers for equal options, and importing `trainsmart.main`
  (what `kopf run -m` does) registers exactly those of the environment's options in Kopf's default
  registry;
- the webhook's handlers exist only with a webhook, the watches only with the controllers on;
- a flag given on the command line wins over its variable; a bad variable is refused with its name.
"""

from __future__ import annotations

import json
import subprocess
import sys

import kopf
import pytest

from trainsmart.cli import build_parser
from trainsmart.main import register_operator
from trainsmart.operator_config import (
    ENV_PREFIX,
    OperatorConfigError,
    operator_options,
    operator_parser,
    options_from_environment,
    variable_name,
)
from trainsmart.options import OperatorOptions

CASES = {
    "defaults": [],
    "webhook behind a Service": [
        "--webhook-port", "9443", "--webhook-service", "ops/trainsmart:8443", "--webhook-configuration", "",
    ],
    "two namespaces": ["--namespace", "team-a", "--namespace", "team-b", "--report-url", "http://op:8080/v1/reports"],
    "peering replica": [
        "--peering", "ts", "--peering-priority", "7", "--pod-name", "op-0", "--pod-namespace", "ops",
    ],
    "admission only": ["--no-controllers", "--webhook-port", "9443", "--metrics-port", "0"],
    "trainer mirror": ["--trainer-image", "mirror.local/trainer:1", "--trainer-command", "python -m mine"],
}  # fmt: skip


def as_environment(argv: list[str]) -> dict[str, str]:
    """The `TRAINSMART_OPERATOR_*` variables that say what `argv` says."""
    parser = operator_parser({})
    actions = {option: action for action in parser._actions for option in action.option_strings}
    env: dict[str, list[str]] = {}
    args = iter(argv)
    for flag in args:
        action = actions[flag]
        env.setdefault(variable_name(action), []).append("1" if action.nargs == 0 else next(args))
    return {name: ",".join(values) for name, values in env.items()}


def from_flags(argv: list[str]) -> OperatorOptions:
    return operator_options(build_parser().parse_args(["operator", *argv]))


def handler_ids(registry: kopf.OperatorRegistry) -> dict[str, list[str]]:
    # Kopf's default registry also holds its own logins as fallbacks, used only when no other login
    # handler exists; trainsmart registers its own, so they never run and are left out here.
    activities = [h for h in registry._activities.get_all_handlers() if not getattr(h, "_fallback", False)]
    return {
        "activities": sorted(h.id for h in activities),
        "watches": sorted(h.id for h in registry._watching.get_all_handlers()),
        "webhooks": sorted(h.id for h in registry._webhooks.get_all_handlers()),
    }


def registered(options: OperatorOptions) -> dict[str, list[str]]:
    registry = kopf.OperatorRegistry()
    register_operator(registry, options)
    return handler_ids(registry)


@pytest.mark.parametrize("argv", CASES.values(), ids=CASES.keys())
def test_flags_and_environment_give_the_same_options_and_handlers(argv: list[str]) -> None:
    flags, environment = from_flags(argv), options_from_environment(as_environment(argv))
    assert flags == environment
    assert registered(flags) == registered(environment)


def test_what_is_registered_follows_the_options() -> None:
    plain = registered(from_flags([]))
    assert plain["watches"] == ["pod-event", "sweep-event", "trainingjob-event"] and plain["webhooks"] == []
    admission_only = registered(from_flags(CASES["admission only"]))
    assert admission_only["watches"] == []
    assert admission_only["webhooks"] == ["validate-sweep", "validate-trainingjob"]
    assert "trainsmart-admission" in admission_only["activities"]


def test_importing_main_registers_the_environments_operator_in_kopfs_default_registry() -> None:
    argv = CASES["webhook behind a Service"]
    code = (
        "import json, kopf, trainsmart.main\n"
        "registry = kopf.get_default_registry()\n"
        "activities = [h for h in registry._activities.get_all_handlers() if not getattr(h, '_fallback', False)]\n"
        "print(json.dumps({'activities': sorted(h.id for h in activities),\n"
        "    'watches': sorted(h.id for h in registry._watching.get_all_handlers()),\n"
        "    'webhooks': sorted(h.id for h in registry._webhooks.get_all_handlers())}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], env=as_environment(argv), capture_output=True, text=True, check=True, timeout=120
    )
    assert json.loads(done.stdout) == registered(from_flags(argv))


def test_a_flag_wins_over_its_variable_and_a_bad_variable_is_named() -> None:
    environ = {f"{ENV_PREFIX}REPORT_PORT": "9090", f"{ENV_PREFIX}NAMESPACE": "team-a"}
    assert options_from_environment(environ).report_port == 9090
    args = operator_parser(environ).parse_args(["--report-port", "7070"])
    assert operator_options(args).report_port == 7070
    assert operator_options(args).settings.namespaces == ("team-a",)
    with pytest.raises(OperatorConfigError, match=f"{ENV_PREFIX}WEBHOOK_PORT='x'"):
        options_from_environment({f"{ENV_PREFIX}WEBHOOK_PORT": "x"})
