"""`make demo`: the whole product in one command, on a throwaway local cluster.

Starts a local cluster with simulated GPU nodes (`trainsmart dev up`) in a private state directory, runs
`trainsmart operator` against it, installs the CRDs, applies `examples/trainingjob-digits.yaml` (2 replicas
x 1 GPU, DDP, checkpoints), prints one line per change of the job's status until it ends, then the
`kubectl get tj` table and the final metrics. Then it applies `examples/sweep-digits.yaml` (a TPE sweep,
trials in parallel, ASHA early stopping; scripts/demo_sweep.py), follows it the same way and shows the trial
table and the best trial. Everything it started is stopped again on success, failure, Ctrl-C or SIGTERM.
Exit status 0 only when the job and the sweep succeeded.

Why a private state directory: a user's own `trainsmart dev up` cluster (default state dir) must never be
touched, reused or stopped by a demo; the node agent picks a free pod bridge, so both can run side by side.

Usage: python scripts/demo.py [--timeout 300] [--stall 120] [--keep-logs]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:
    from trainsmart.devcluster.operator_process import OperatorProcess

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "trainingjob-digits.yaml"
CRDS_DIR = ROOT / "crds"
KUBECTL = shutil.which("kubectl") or ("/usr/bin/kubectl" if Path("/usr/bin/kubectl").exists() else None)
"""None on a bare machine (Debian ships kubectl only as `kubernetes-client`, which `make` does not install): the
demo then applies through the Python client and asks the apiserver for the same table kubectl prints."""
TABLE_ACCEPT = "application/json;as=Table;v=v1;g=meta.k8s.io"
TERMINAL_PHASES = ("Succeeded", "Failed")
T0 = time.monotonic()


def say(message: str) -> None:
    """Progress of the demo itself, set apart from the tools' output it passes through."""
    print(f"==> {message}", flush=True)


class SignalledError(Exception):
    """SIGTERM (or SIGINT) arrived: unwind through the cleanup like Ctrl-C does."""


def _raise_interrupted(signum: int, _frame: FrameType | None) -> None:
    raise SignalledError(signal.Signals(signum).name)


@dataclass
class Demo:
    """Everything the demo started, so that `shutdown` can stop exactly that, in reverse order."""

    state_dir: Path
    python: str = sys.executable
    kubeconfig: Path | None = None
    operator: OperatorProcess | None = None
    operator_log: Path = field(init=False)
    cluster_started: bool = False

    def __post_init__(self) -> None:
        self.operator_log = self.state_dir / "operator.log"

    # ---- the cluster -----------------------------------------------------------------------------------

    def cli(self, *args: str) -> list[str]:
        return [self.python, "-m", "trainsmart.cli", *args]

    def dev_up(self) -> None:
        """`trainsmart dev up` in its own session: a Ctrl-C in the terminal reaches the demo, which then
        stops the cluster in order, instead of hitting a half-started supervisor."""
        say(f"starting a local cluster with simulated GPU nodes (state dir {self.state_dir})")
        self.cluster_started = True
        up = subprocess.Popen(
            self.cli("dev", "up", "--state-dir", str(self.state_dir)), stdin=subprocess.DEVNULL, start_new_session=True
        )
        try:
            code = up.wait(timeout=900)
        finally:
            if up.poll() is None:
                up.terminate()
                up.wait(10)
        if code != 0:
            raise RuntimeError(f"`trainsmart dev up` failed with exit code {code}")
        state = json.loads((self.state_dir / "state.json").read_text())
        self.kubeconfig = Path(state["kubeconfig"])

    def kubectl(self, *args: str, check: bool = True) -> None:
        assert self.kubeconfig is not None and KUBECTL is not None
        subprocess.run([KUBECTL, "--kubeconfig", str(self.kubeconfig), *args], check=check, timeout=60)

    # ---- the operator ----------------------------------------------------------------------------------

    def start_operator(self, gateway: str) -> None:
        """The operator with its report endpoint on the pods' gateway, the one host address pods reach. In
        its own session, like the cluster: a Ctrl-C reaches the demo, which stops it first."""
        from trainsmart.devcluster.controlplane import free_port
        from trainsmart.devcluster.operator_process import trainsmart_operator

        assert self.kubeconfig is not None
        # The admission webhook, served over TLS from our own CA and called by the real apiserver.
        webhook = ["--webhook-port", str(free_port("127.0.0.1")), "--webhook-host", "127.0.0.1"]
        webhook += ["--webhook-cert-dir", str(self.state_dir / "webhook")]
        self.operator = trainsmart_operator(
            self.kubeconfig, self.operator_log, report_host=gateway, extra_args=webhook, new_session=True
        )
        say(f"starting the operator (report endpoint {self.operator.report_base}, log {self.operator_log})")
        self.operator.start(timeout=60)

    def print_pod_logs(self, namespace: str, job: str, replicas: int, lines: int = 15) -> None:
        """The end of each replica's log (what `trainsmart dev logs` prints; there is no `kubectl logs`)."""
        from trainsmart.devcluster.devenv import log_files

        for index in range(replicas):
            for container, path in log_files(self.state_dir, namespace, f"{job}-{index}").items():
                tail = path.read_text(errors="replace").splitlines()[-lines:]
                print(f"--- {job}-{index}/{container} (last {len(tail)} lines) ---", *tail, sep="\n", flush=True)

    def operator_tail(self, lines: int = 40) -> str:
        return (self.operator.tail(lines) if self.operator is not None else "") or "(no operator log)"

    # ---- shutdown --------------------------------------------------------------------------------------

    def shutdown(self) -> None:
        """Operator first (so it sees no cluster vanish under it), then the cluster, then anything that
        still names our private state dir (a supervisor interrupted before it was ready has no state file
        for `dev down` to find). Never stops a process that does not belong to this demo."""
        if self.operator is not None and self.operator.running:
            say("stopping the operator")
            self.operator.stop()
        if self.cluster_started:
            say("stopping the local cluster (trainsmart dev down)")
            subprocess.run(self.cli("dev", "down", "--state-dir", str(self.state_dir)), check=False, timeout=60)
            stragglers = processes_naming(self.state_dir)
            if stragglers:
                say(f"stopping {len(stragglers)} leftover process(es) of this demo: {stragglers}")
                stop_pids(stragglers, grace=10)


def processes_naming(path: Path) -> list[int]:
    """Pids whose command line mentions `path` (our unique temp dir), except this process."""
    needle = str(path).encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            if needle in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
    return found


def stop_pids(pids: list[int], grace: float) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(Path(f"/proc/{pid}").exists() for pid in pids):
        time.sleep(0.2)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def pod_gateway(api: Any) -> str:
    """Where pods reach the host: the GPU nodes' InternalIP, which the node agent sets to its pod bridge's
    gateway address."""
    from kubernetes import client

    for node in client.CoreV1Api(api).list_node().items:
        if "nvidia.com/gpu" not in (node.status.capacity or {}):
            continue
        for address in node.status.addresses or []:
            if address.type == "InternalIP" and address.address:
                return str(address.address)
    raise RuntimeError("no GPU node with an InternalIP: is the node agent running?")


def install_crds(api: Any) -> None:
    """What `kubectl apply -f crds/` plus `kubectl wait --for=condition=Established` do, for a machine
    without kubectl."""
    from kubernetes import client

    extensions = client.ApiextensionsV1Api(api)
    for path in sorted(CRDS_DIR.glob("*.yaml")):
        manifest = yaml.safe_load(path.read_text())
        try:
            extensions.create_custom_resource_definition(manifest)
        except client.ApiException as exc:
            if exc.status != 409:
                raise
        deadline = time.monotonic() + 60
        while True:
            crd = extensions.read_custom_resource_definition(manifest["metadata"]["name"])
            conditions = crd.status.conditions if crd.status is not None else None
            if any(c.type == "Established" and c.status == "True" for c in conditions or []):
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"CRD {manifest['metadata']['name']} not Established within 60 s")
            time.sleep(0.2)


def wait_discovered(api: Any, timeout: float = 60.0) -> None:
    """Until API discovery lists every CRD's resource (Established comes a moment before that)."""
    from kubernetes import client

    from trainsmart.api import GROUP, VERSION

    wanted = {yaml.safe_load(path.read_text())["spec"]["names"]["plural"] for path in CRDS_DIR.glob("*.yaml")}
    objects = client.CustomObjectsApi(api)
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(client.ApiException):
            response = objects.get_api_resources(GROUP, VERSION, _preload_content=False, _request_timeout=10)
            if wanted <= {item["name"] for item in json.loads(response.data).get("resources") or []}:
                return
        if time.monotonic() > deadline:
            raise TimeoutError(f"API discovery did not list {sorted(wanted)} within {timeout:.0f} s")
        time.sleep(0.2)


def server_table(api: Any, namespace: str, plural: str | None = None) -> str:
    """The `kubectl get tj` table as the apiserver renders it (the CRD's printer columns; kubectl asks for
    the same Table), laid out as kubectl does: upper-case headers, columns three spaces apart."""
    from kubernetes import client

    from trainsmart.api import GROUP, TRAININGJOB_PLURAL, VERSION

    response = client.CustomObjectsApi(api).list_namespaced_custom_object(
        GROUP,
        VERSION,
        namespace,
        plural or TRAININGJOB_PLURAL,
        _headers={"Accept": TABLE_ACCEPT},
        _preload_content=False,
    )
    table = json.loads(response.data)
    shown = [i for i, col in enumerate(table["columnDefinitions"]) if not col.get("priority")]
    rows = [[str(col["name"]).upper() for i, col in enumerate(table["columnDefinitions"]) if i in shown]]
    rows += [["" if row["cells"][i] is None else str(row["cells"][i]) for i in shown] for row in table["rows"]]
    widths = [max(len(row[k]) for row in rows) for k in range(len(rows[0]))]
    return "\n".join("   ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows)


# ---- watching the job -----------------------------------------------------------------------------------


def describe(status: Mapping[str, Any]) -> str:
    """One line: phase, epoch/total, percent, replicas, restarts and the latest objective metric."""
    phase = status.get("phase") or "Pending"
    progress = status.get("progress") or {}
    metrics = status.get("metrics") or {}
    replicas = status.get("replicas") or {}
    total = progress.get("totalEpochs")
    parts = [f"{phase:<10}"]
    parts.append(f"epoch {progress.get('epoch', 0)}/{total if total is not None else '?'}")
    parts.append(f"{float(progress.get('percent', 0.0)):5.1f}%")
    parts.append(f"pods running {replicas.get('running', 0)}, pending {replicas.get('pending', 0)}")
    restarts = int(status.get("restarts") or 0)
    if restarts:
        parts.append(f"restarts {restarts}")
    headline = metrics.get("headline")
    if headline:
        parts.append(str(headline))
    rate = progress.get("samplesPerSecond")
    if rate:
        parts.append(f"{float(rate):.0f} samples/s")
    return "  ".join(parts)


def watch_job(read: Callable[[], Mapping[str, Any] | None], timeout: float, stall: float) -> Mapping[str, Any]:
    """Poll the job's status, printing a line whenever that line changes; returns the last status once the
    phase is terminal. Polling (not a watch) keeps this trivially robust to apiserver hiccups, and half a
    second is finer than anything a person reads. A status that stops changing for `stall` seconds fails
    the demo early: a stuck job should not cost the whole timeout before the logs are shown."""
    deadline = time.monotonic() + timeout
    last_line = None
    changed = time.monotonic()
    status: Mapping[str, Any] = {}
    while True:
        body = read()
        status = (body or {}).get("status") or {}
        line = describe(status)
        now = time.monotonic()
        if line != last_line:
            print(f"  [{now - T0:6.1f}s] {line}", flush=True)
            last_line, changed = line, now
        if status.get("phase") in TERMINAL_PHASES:
            return status
        if now > deadline:
            raise TimeoutError(f"the job did not finish within {timeout:.0f} s (last: {last_line})")
        if now - changed > stall:
            raise TimeoutError(f"the job's status has not changed for {stall:.0f} s (last: {last_line})")
        time.sleep(0.5)


def print_final(status: Mapping[str, Any]) -> None:
    metrics = status.get("metrics") or {}
    say(f"final metrics (objective: {metrics.get('objective', '?')})")
    latest: Mapping[str, float] = metrics.get("latest") or {}
    best: Mapping[str, float] = metrics.get("best") or {}
    if latest or best:
        print(f"  {'metric':<22}{'latest':>12}{'best':>12}")
        for key in sorted(set(latest) | set(best)):
            cells = [f"{values[key]:>12.4g}" if key in values else f"{'-':>12}" for values in (latest, best)]
            print(f"  {key:<22}{''.join(cells)}")
    checkpoint = status.get("checkpoint") or {}
    if checkpoint:
        print(f"  checkpoint: epoch {checkpoint.get('latestEpoch')} at {checkpoint.get('path')}")
    print(f"  restarts {status.get('restarts', 0)}, GPU-seconds {float(status.get('gpuSeconds') or 0):.1f}")
    for condition in status.get("conditions") or []:
        if condition.get("status") == "True":
            print(f"  condition {condition.get('type')}: {condition.get('reason')} - {condition.get('message', '')}")


@contextlib.contextmanager
def signals_as_interrupts() -> Iterator[None]:
    """SIGTERM unwinds like Ctrl-C; both are ignored while the cleanup runs, so it always completes."""
    signal.signal(signal.SIGTERM, _raise_interrupted)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def show_admission(objects: Any, manifest: Mapping[str, Any], namespace: str, timeout: float = 30.0) -> None:
    """Apply a job that overrides a variable of the trainer contract: the schema allows it, the operator's
    admission webhook (called by the apiserver over TLS) must refuse it, naming the field."""
    from kubernetes import client

    from trainsmart.api import GROUP, TRAININGJOB_PLURAL, VERSION

    bad = json.loads(json.dumps(manifest))
    bad["metadata"]["name"] = "rejected-by-admission"
    bad["spec"].setdefault("trainer", {})["env"] = [{"name": "RANK", "value": "3"}]
    say("admission: applying a TrainingJob that sets RANK itself (the operator owns that variable)")
    deadline = time.monotonic() + timeout
    while True:
        try:
            objects.create_namespaced_custom_object(GROUP, VERSION, namespace, TRAININGJOB_PLURAL, bad)
        except client.ApiException as exc:
            message = json.loads(exc.body or "{}").get("message", str(exc))
            say(f"  rejected ({exc.status}): {message}")
            return
        # Accepted: Kopf has not registered its webhook configuration yet. Undo and try again.
        objects.delete_namespaced_custom_object(GROUP, VERSION, namespace, TRAININGJOB_PLURAL, bad["metadata"]["name"])
        if time.monotonic() > deadline:
            raise RuntimeError("the admission webhook did not start refusing invalid TrainingJobs")
        time.sleep(0.5)


def run(demo: Demo, timeout: float, stall: float) -> bool:
    from kubernetes import client, config

    from trainsmart.api import GROUP, TRAININGJOB_PLURAL, VERSION

    demo.dev_up()
    assert demo.kubeconfig is not None
    api = config.new_client_from_config(config_file=str(demo.kubeconfig))
    try:
        objects = client.CustomObjectsApi(api)
        manifest = yaml.safe_load(EXAMPLE.read_text())
        name, namespace = manifest["metadata"]["name"], manifest["metadata"].get("namespace", "default")
        # CRDs before the operator, as a Helm install does: Kopf looks up its resources in API discovery at
        # start and again on each CRD event, and a CRD whose last event comes before discovery lists it is
        # never served (seen here: "Unresolved resources cannot be served" and the job left untouched).
        say("installing the CRDs")
        if KUBECTL is not None:
            demo.kubectl("apply", "-f", str(CRDS_DIR))
            demo.kubectl("wait", "--for=condition=Established", "--timeout=60s", "-f", str(CRDS_DIR))
        else:
            say("kubectl not found: applying with the Python client instead")
            install_crds(api)
        wait_discovered(api)
        demo.start_operator(pod_gateway(api))
        show_admission(objects, manifest, namespace)
        say(f"applying {EXAMPLE.relative_to(ROOT)} (2 replicas x 1 GPU, DDP, checkpoints)")
        if KUBECTL is not None:
            demo.kubectl("apply", "-n", namespace, "-f", str(EXAMPLE))
        else:
            objects.create_namespaced_custom_object(GROUP, VERSION, namespace, TRAININGJOB_PLURAL, manifest)

        def read() -> Mapping[str, Any] | None:
            try:
                body: Mapping[str, Any] = objects.get_namespaced_custom_object(
                    GROUP, VERSION, namespace, TRAININGJOB_PLURAL, name
                )
            except client.ApiException as exc:
                if exc.status == 404:
                    return None
                raise
            if demo.operator is not None:
                demo.operator.check()
            return body

        say(f"training; status of TrainingJob {namespace}/{name} as it changes:")
        status = watch_job(read, timeout, stall)
        say("kubectl get tj")
        if KUBECTL is not None:
            demo.kubectl("get", "tj", "-n", namespace)
        else:
            print(server_table(api, namespace))
        print_final(status)
        if status.get("phase") != "Succeeded":
            if KUBECTL is not None:
                say("the job did not succeed; kubectl describe:")
                demo.kubectl("describe", "tj", "-n", namespace, name, check=False)
            demo.print_pod_logs(namespace, name, int(manifest["spec"].get("replicas", 1)))
            return False
        return run_sweep_part(demo, api, objects, timeout, stall)
    finally:
        api.close()


def run_sweep_part(demo: Demo, api: Any, objects: Any, timeout: float, stall: float) -> bool:
    """The sweep example on the same cluster and operator (scripts/demo_sweep.py)."""
    from demo_sweep import run_sweep

    from trainsmart.api import GROUP, SWEEP_PLURAL, VERSION

    def apply(path: Path, namespace: str) -> None:
        if KUBECTL is not None:
            demo.kubectl("apply", "-n", namespace, "-f", str(path))
        else:
            body = yaml.safe_load(path.read_text())
            objects.create_namespaced_custom_object(GROUP, VERSION, namespace, SWEEP_PLURAL, body)

    def print_table(namespace: str) -> None:
        if KUBECTL is not None:
            demo.kubectl("get", "hps", "-n", namespace)
        else:
            print(server_table(api, namespace, SWEEP_PLURAL))

    return run_sweep(objects, apply, print_table, say, lambda: time.monotonic() - T0, timeout, stall)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds the job may take (default 300)")
    parser.add_argument(
        "--stall", type=float, default=120.0, help="fail when the status has not changed for this long (default 120)"
    )
    parser.add_argument("--keep-logs", action="store_true", help="keep the state dir (logs) even on success")
    args = parser.parse_args()
    # Short and world-traversable: pods (non-root) get volumes from under this directory.
    state_dir = Path(tempfile.mkdtemp(prefix="trainsmart-demo-"))
    state_dir.chmod(0o755)
    demo = Demo(state_dir)
    ok = False
    try:
        with signals_as_interrupts():
            try:
                ok = run(demo, args.timeout, args.stall)
            except (KeyboardInterrupt, SignalledError) as exc:
                say(f"interrupted ({str(exc) or type(exc).__name__}); cleaning up")
            except Exception as exc:
                say(f"demo failed: {type(exc).__name__}: {exc}")
                if demo.operator is not None:
                    print(f"--- operator log (last lines) ---\n{demo.operator_tail()}", flush=True)
    finally:
        demo.shutdown()
    if ok and not args.keep_logs:
        shutil.rmtree(state_dir, ignore_errors=True)
    else:
        say(f"logs kept in {state_dir} (operator.log, supervisor.log, agent.log, agent/logs/)")
    say(f"{'SUCCEEDED' if ok else 'FAILED'} in {time.monotonic() - T0:.0f} s")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
