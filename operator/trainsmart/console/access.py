"""Reading jobs, sweeps, their pods and Events through a kubeconfig, for people (`trainsmart get`, ...).

Read-only, synchronous and short: a person waits for each call, so there is no thread pool as in `kube.py`
(which is the operator's, and the only module that writes). Every API failure becomes a `ConsoleError`
whose message says what to do and whose `exit_code` the command returns (documented in docs/cli.md):
2 not found, 3 cluster unreachable or no kubeconfig, 4 forbidden or unauthorized.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Final, Literal, TypeVar

import urllib3
from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

from trainsmart.api import GROUP, SWEEP_PLURAL, TRAININGJOB_PLURAL, VERSION
from trainsmart.names import JOB_NAME_LABEL, trial_selector

Kind = Literal["TrainingJob", "HyperparamSweep"]
PLURALS: Final[dict[str, str]] = {"TrainingJob": TRAININGJOB_PLURAL, "HyperparamSweep": SWEEP_PLURAL}
REQUEST_TIMEOUT_SECONDS: Final = 15.0

EXIT_NOT_FOUND: Final = 2
EXIT_UNREACHABLE: Final = 3
EXIT_FORBIDDEN: Final = 4

_T = TypeVar("_T")


class ConsoleError(Exception):
    """A failure a person can act on: the message says what to do, `exit_code` is the command's."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass(frozen=True)
class Target:
    """Where to read from: kubectl's --kubeconfig and --context; None means kubectl's defaults."""

    kubeconfig: str | None = None
    context: str | None = None


def _resource(call: str) -> str:
    """The resource a call reads, as RBAC spells it, for the "ask for get on ..." hint."""
    for plural in (TRAININGJOB_PLURAL, SWEEP_PLURAL):
        if plural in call:
            return f"{plural}.{GROUP}"
    return call


class Cluster:
    """One API client for one kubeconfig context, with the reads the console needs."""

    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        self.api = api
        self.namespace = namespace
        self.core = client.CoreV1Api(api)
        self.objects = client.CustomObjectsApi(api)

    @property
    def server(self) -> str:
        return str(self.api.configuration.host)

    # ---- error translation -------------------------------------------------------------------------------

    def call(self, what: str, function: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
        """`function(*args)`, its failures turned into `ConsoleError`s that say what to do. `what` names the
        read for the message, e.g. "list trainingjobs in namespace ml"."""
        kwargs.setdefault("_request_timeout", REQUEST_TIMEOUT_SECONDS)
        try:
            return function(*args, **kwargs)
        except ApiException as error:
            raise self.translate(what, error) from error
        except (urllib3.exceptions.HTTPError, OSError) as error:
            raise ConsoleError(
                f"cannot reach the cluster at {self.server}: {_reason(error)}; check KUBECONFIG, --kubeconfig "
                "or --context (for the local cluster: `trainsmart dev up` prints the KUBECONFIG to export)",
                EXIT_UNREACHABLE,
            ) from error

    def translate(self, what: str, error: ApiException) -> ConsoleError:
        status = int(error.status or 0)
        detail = _api_message(error)
        if status == 403:
            return ConsoleError(
                f"forbidden: cannot {what}: {detail}; ask your cluster admin for get, list and watch on "
                f"{_resource(what)} (and on pods, pods/log and events) in that namespace",
                EXIT_FORBIDDEN,
            )
        if status == 401:
            return ConsoleError(
                f"unauthorized at {self.server}: your credentials were refused ({detail}); log in again or "
                "choose another --context",
                EXIT_FORBIDDEN,
            )
        if status == 404:
            return ConsoleError(f"not found: {what}: {detail}", EXIT_NOT_FOUND)
        return ConsoleError(f"cannot {what}: HTTP {status} {detail}")

    # ---- reads -------------------------------------------------------------------------------------------

    def get(self, kind: Kind, name: str, namespace: str | None = None) -> dict[str, Any]:
        namespace = namespace or self.namespace
        plural = PLURALS[kind]
        try:
            found: dict[str, Any] = self.call(
                f"get {plural}.{GROUP} {name} in namespace {namespace}",
                self.objects.get_namespaced_custom_object,
                GROUP,
                VERSION,
                namespace,
                plural,
                name,
            )
        except ConsoleError as error:
            if error.exit_code == EXIT_NOT_FOUND:
                raise ConsoleError(
                    f"no {kind} named {name} in namespace {namespace}; list them with `trainsmart get`"
                    " (or `trainsmart get -A` for every namespace)",
                    EXIT_NOT_FOUND,
                ) from error
            raise
        return found

    def find(self, name: str, namespace: str | None = None, kind: Kind | None = None) -> dict[str, Any]:
        """The TrainingJob or HyperparamSweep called `name` (a job first: a sweep's trials are jobs too, but
        never share their sweep's name)."""
        namespace = namespace or self.namespace
        for candidate in (kind,) if kind else ("TrainingJob", "HyperparamSweep"):
            try:
                return self.get(candidate, name, namespace)
            except ConsoleError as error:
                if error.exit_code != EXIT_NOT_FOUND:
                    raise
        raise ConsoleError(
            f"no {kind or 'TrainingJob or HyperparamSweep'} named {name} in namespace {namespace}; list them with "
            "`trainsmart get` (or `trainsmart get -A` for every namespace)",
            EXIT_NOT_FOUND,
        )

    def list_objects(self, kind: Kind, namespace: str | None, label_selector: str = "") -> list[dict[str, Any]]:
        """Every object of `kind` in `namespace` (None: all namespaces), as plain dicts."""
        plural = PLURALS[kind]
        if namespace is None:
            body = self.call(
                f"list {plural}.{GROUP} in all namespaces",
                self.objects.list_cluster_custom_object,
                GROUP,
                VERSION,
                plural,
                label_selector=label_selector,
            )
        else:
            body = self.call(
                f"list {plural}.{GROUP} in namespace {namespace}",
                self.objects.list_namespaced_custom_object,
                GROUP,
                VERSION,
                namespace,
                plural,
                label_selector=label_selector,
            )
        return list(body.get("items") or [])

    def trials(self, namespace: str, sweep: str) -> list[dict[str, Any]]:
        return self.list_objects("TrainingJob", namespace, trial_selector(sweep))

    def pods(self, namespace: str, job: str) -> list[dict[str, Any]]:
        """The job's pods (every attempt's still there), as camelCase dicts."""
        response = self.call(
            f"list pods in namespace {namespace}",
            self.core.list_namespaced_pod,
            namespace,
            label_selector=f"{JOB_NAME_LABEL}={job}",
            _preload_content=False,
        )
        return list(json.loads(response.data).get("items") or [])

    def events(self, namespace: str, names: set[str]) -> list[dict[str, Any]]:
        """Events about the objects called `names` (the job and its pods, say), oldest first. A person
        without permission on events still gets the rest of `describe`: forbidden reads as none."""
        try:
            response = self.call(
                f"list events in namespace {namespace}",
                self.core.list_namespaced_event,
                namespace,
                _preload_content=False,
            )
        except ConsoleError as error:
            if error.exit_code == EXIT_FORBIDDEN:
                return []
            raise
        items = [e for e in json.loads(response.data).get("items") or [] if e["involvedObject"].get("name") in names]
        return sorted(items, key=_event_time)

    def claim(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            response = self.call(
                f"get persistentvolumeclaim {name} in namespace {namespace}",
                self.core.read_namespaced_persistent_volume_claim,
                name,
                namespace,
                _preload_content=False,
            )
        except ConsoleError as error:
            if error.exit_code == EXIT_NOT_FOUND:
                return None
            raise
        return dict(json.loads(response.data))

    def volume(self, name: str) -> dict[str, Any] | None:
        try:
            response = self.call(
                f"get persistentvolume {name}", self.core.read_persistent_volume, name, _preload_content=False
            )
        except ConsoleError as error:
            if error.exit_code in (EXIT_NOT_FOUND, EXIT_FORBIDDEN):
                return None
            raise
        return dict(json.loads(response.data))

    def watch(self, kind: Kind, namespace: str, name: str, timeout_seconds: int = 60) -> Iterator[tuple[str, Any]]:
        """(event type, object) for `name` until the server ends the watch (after `timeout_seconds`); the
        caller watches again. A watch, not polling: a quiet job costs nothing."""
        plural = PLURALS[kind]
        stream = watch.Watch().stream(
            self.objects.list_namespaced_custom_object,
            GROUP,
            VERSION,
            namespace,
            plural,
            field_selector=f"metadata.name={name}",
            timeout_seconds=timeout_seconds,
            _request_timeout=timeout_seconds + REQUEST_TIMEOUT_SECONDS,
        )
        try:
            for event in stream:
                yield str(event["type"]), event["object"]
        except ApiException as error:
            raise self.translate(f"watch {plural}.{GROUP} {name} in namespace {namespace}", error) from error
        except (urllib3.exceptions.HTTPError, OSError) as error:
            raise ConsoleError(
                f"lost the cluster at {self.server}: {_reason(error)}; check that it is still up", EXIT_UNREACHABLE
            ) from error

    def pod_log(self, namespace: str, pod: str, container: str | None, follow: bool = False) -> Iterator[bytes]:
        """A container's log through the API (the kubelet serves it), in chunks."""
        response = self.call(
            f"get pods/log {pod} in namespace {namespace}",
            self.core.read_namespaced_pod_log,
            pod,
            namespace,
            container=container,
            follow=follow,
            _preload_content=False,
            _request_timeout=None if follow else REQUEST_TIMEOUT_SECONDS,
        )
        try:
            yield from response.stream(4096)
        finally:
            response.release_conn()


def connect(target: Target = Target(), namespace: str | None = None) -> Cluster:
    """A `Cluster` for the kubeconfig (as kubectl finds it: --kubeconfig, else $KUBECONFIG, else
    ~/.kube/config; in a pod, its service account) and the namespace (else the context's, else default)."""
    configuration = client.Configuration()
    try:
        if target.kubeconfig or target.context or not _in_cluster():
            config.load_kube_config(
                config_file=target.kubeconfig, context=target.context, client_configuration=configuration
            )
            contexts, active = config.list_kube_config_contexts(config_file=target.kubeconfig)
            chosen = next((c for c in contexts if c["name"] == target.context), active) or {}
            default_namespace = str((chosen.get("context") or {}).get("namespace") or "default")
        else:
            config.load_incluster_config(client_configuration=configuration)
            default_namespace = _in_cluster_namespace()
    except (config.ConfigException, OSError) as error:
        raise ConsoleError(
            f"no usable kubeconfig: {error}; set KUBECONFIG or pass --kubeconfig (for the local cluster: "
            "`trainsmart dev up` prints the line to export)",
            EXIT_UNREACHABLE,
        ) from error
    configuration.retries = 1  # an unreachable server should say so in seconds, not after urllib3's retries
    return Cluster(client.ApiClient(configuration), namespace or default_namespace)


_SERVICE_ACCOUNT_NAMESPACE: Final = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"


def _in_cluster() -> bool:
    return bool(os.environ.get("KUBERNETES_SERVICE_HOST")) and not os.environ.get("KUBECONFIG")


def _in_cluster_namespace() -> str:
    try:
        with open(_SERVICE_ACCOUNT_NAMESPACE) as file:
            return file.read().strip() or "default"
    except OSError:
        return "default"


def _api_message(error: ApiException) -> str:
    try:
        return str(json.loads(error.body or "{}").get("message") or error.reason)
    except (ValueError, AttributeError):
        return str(error.reason)


def _reason(error: BaseException) -> str:
    reason = getattr(error, "reason", None)
    return str(reason or error).split("Caused by ")[-1].strip("()'\" ")


def _event_time(event: dict[str, Any]) -> str:
    return str(
        event.get("lastTimestamp")
        or event.get("eventTime")
        or event.get("firstTimestamp")
        or event["metadata"].get("creationTimestamp")
        or ""
    )
