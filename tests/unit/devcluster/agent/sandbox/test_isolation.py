"""The real sandbox (root: network, UTS and mount namespaces), without an apiserver.

Pins: two pods bind the same port and talk over TCP by their DNS names; pods reach the host on the
gateway; the hostname is the pod's; the container sees its volumes (read-only where asked), its hosts
file (updated in place while it runs), its working dir and exactly its env, as the run-as user with the
pod's groups; mount points that do not exist on the host are created for the container only; close()
and cleanup_all() leave no process, namespace pin, veth, mount or directory behind, also for processes
that escaped their process group and for a crashed agent's leftovers; one manager per bridge; host
fallback; creating + launching is fast.
"""

from __future__ import annotations

import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from trainsmart.devcluster.agent.pod_runtime_contract import ContainerLaunch, Mount
from trainsmart.devcluster.agent.sandbox import mount_plan as sm
from trainsmart.devcluster.agent.sandbox.manager import BridgeBusyError, SandboxError, SandboxManager
from trainsmart.devcluster.agent.sandbox.processes import LocalProcess

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="network and mount namespaces need root")

PY = sys.executable


def pod(name: str, *, ns: str = "ns", subdomain: str | None = "j", **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {
            "name": name,
            "namespace": ns,
            "uid": f"uid-{ns}-{name}-{time.monotonic_ns()}",
            "labels": {"job": "j"},
        },
        "spec": {"subdomain": subdomain, **spec} if subdomain else spec,
        "status": {},
    }


def launch(p: dict[str, Any], code: str, log: Path, container: str = "main", **kw: Any) -> ContainerLaunch:
    meta = p["metadata"]
    env = kw.pop("env", {"PATH": "/usr/bin:/bin"})
    return ContainerLaunch(meta["uid"], meta["namespace"], meta["name"], container, [PY, "-c", code], env, log, **kw)


def wait(proc: LocalProcess, timeout: float = 20.0) -> int:
    deadline = time.monotonic() + timeout
    while (code := proc.poll()) is None:
        assert time.monotonic() < deadline, "container did not exit"
        time.sleep(0.02)
    return code


def host_state(state: Path, prefix: str, bridge: str) -> tuple[list[str], list[str], list[str]]:
    """What a manager on `state`/`prefix`/`bridge` may add to the host: mounts that mention its state
    dir, its links, entries of `/`. Scoped, so other agents running meanwhile cannot disturb the test."""
    mounts = [line for line in Path("/proc/mounts").read_text().splitlines() if str(state.resolve()) in line]
    out = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True, check=True).stdout
    names = [line.split(":")[1].strip().split("@")[0] for line in out.splitlines()]
    links = sorted(n for n in names if n == bridge or n.startswith(f"{prefix}v"))
    return mounts, links, sorted(os.listdir("/"))


@pytest.fixture(scope="module")
def manager(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxManager]:
    m = SandboxManager(tmp_path_factory.mktemp("sandbox"), pod_cidr="10.251.0.0/24", bridge="tsbrut", prefix="tu")
    m.start()
    try:
        yield m
    finally:
        m.cleanup_all()


def ready_view(*pods_and_ips: tuple[dict[str, Any], str]) -> list[dict[str, Any]]:
    return [
        {**p, "status": {"podIP": ip, "conditions": [{"type": "Ready", "status": "True"}]}} for p, ip in pods_and_ips
    ]


HEADLESS = {"metadata": {"name": "j", "namespace": "ns"}, "spec": {"clusterIP": "None", "selector": {"job": "j"}}}

SERVER = """
import socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 29500)); s.listen()
c, _ = s.accept(); c.sendall(socket.gethostname().encode()); c.close()
"""
CLIENT = """
import socket, time
busy = socket.socket(); busy.bind(("0.0.0.0", 29500)); busy.listen()  # the same port, in this pod
for _ in range(200):
    try:
        c = socket.create_connection(("{target}", 29500), timeout=1); break
    except OSError:
        time.sleep(0.05)
print("got", c.recv(64).decode(), "from", socket.gethostbyname("{target}"), flush=True)
"""


def test_two_pods_share_a_port_and_talk_by_name(manager: SandboxManager, tmp_path: Path) -> None:
    a, b = pod("j-0"), pod("j-1")
    sa, sb = manager.create(a), manager.create(b)
    assert sa.ip != sb.ip
    manager.set_cluster_view(ready_view((a, sa.ip), (b, sb.ip)), [HEADLESS])
    server = sa.launch(launch(a, SERVER, tmp_path / "a.log"))
    for target in ("j-0.j", "j-0.j.ns.svc.cluster.local"):
        server = server if server.poll() is None else sa.launch(launch(a, SERVER, tmp_path / "a.log"))
        client = sb.launch(launch(b, CLIENT.format(target=target), tmp_path / "b.log"))
        assert wait(client) == 0, (tmp_path / "b.log").read_text()
        assert wait(server) == 0, (tmp_path / "a.log").read_text()
        assert f"got j-0 from {sa.ip}" in (tmp_path / "b.log").read_text()
    sa.close()
    sb.close()


def test_pods_reach_the_host_on_the_gateway(manager: SandboxManager, tmp_path: Path) -> None:
    listener = socket.create_server((manager.gateway_ip, 0))
    port = listener.getsockname()[1]
    accepted: list[bytes] = []

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            accepted.append(conn.recv(16))

    thread = threading.Thread(target=serve)
    thread.start()
    p = pod("reporter", subdomain=None)
    sandbox = manager.create(p)
    code = f"import socket; socket.create_connection(({manager.gateway_ip!r}, {port})).sendall(b'report')"
    assert wait(sandbox.launch(launch(p, code, tmp_path / "log"))) == 0, (tmp_path / "log").read_text()
    thread.join(10)
    listener.close()
    sandbox.close()
    assert accepted == [b"report"]


FS_PROBE = """
import os, json, time
out = {"cwd": os.getcwd(), "uid": os.getuid(), "gid": os.getgid(), "groups": sorted(os.getgroups()),
       "env": dict(os.environ), "hostname": os.uname().nodename,
       "ro": open("/data/in/hello").read(), "file": open("/etc/app.yaml").read(), "nested": os.listdir("/ckpt/cfg"),
       "token": open("/var/run/secrets/kubernetes.io/serviceaccount/token").read()}
try:
    open("/data/in/new", "w")
except OSError as e:
    out["ro_error"] = e.errno
open("/ckpt/written-by-pod", "w").write("checkpoint")
print(json.dumps(out), flush=True)
while "late-svc" not in open("/etc/hosts").read():
    time.sleep(0.05)
print("saw late-svc", flush=True)
"""


def test_the_container_sees_its_filesystem_env_and_identity(manager: SandboxManager, tmp_path: Path) -> None:
    import json

    vol_ro, ckpt, cfg, token = (tmp_path / n for n in ("in", "ckpt", "cfg", "sa"))
    for d in (vol_ro, ckpt, cfg, token):
        d.mkdir()
    ckpt.chmod(0o777)
    (vol_ro / "hello").write_text("hi")
    (cfg / "app.yaml").write_text("lr: 0.1")
    (token / "token").write_text("jwt")
    before = host_state(manager.root, manager.prefix, "none")
    p = pod("probe", securityContext={"fsGroup": 2345, "supplementalGroups": [3456]})
    sandbox = manager.create(p)
    env = {"PATH": "/usr/bin:/bin", "A.B": "dotted", "X-Y": "dashed", "EMPTY": "", "LD_NOTHING": "1"}
    mounts = [
        Mount(vol_ro, "/data/in", read_only=True),
        Mount(ckpt, "/ckpt"),
        Mount(cfg, "/ckpt/cfg", read_only=True),
        Mount(cfg / "app.yaml", "/etc/app.yaml", read_only=True),
        Mount(token, "/var/run/secrets/kubernetes.io/serviceaccount", read_only=True),
    ]
    proc = sandbox.launch(
        launch(p, FS_PROBE, tmp_path / "log", env=env, mounts=mounts, working_dir="/workspace/run", run_as_user=1000)
    )
    deadline = time.monotonic() + 20
    while not (tmp_path / "log").read_text().strip() and time.monotonic() < deadline:
        time.sleep(0.02)
    seen = json.loads((tmp_path / "log").read_text().splitlines()[0])
    manager.set_cluster_view(
        ready_view((p, sandbox.ip)),
        [{"metadata": {"name": "late-svc", "namespace": "ns"}, "spec": {"selector": {"job": "j"}}}],
    )
    assert wait(proc) == 0, (tmp_path / "log").read_text()
    assert (tmp_path / "log").read_text().splitlines()[1] == "saw late-svc"
    env_seen = {k: v for k, v in seen["env"].items() if k != "LC_CTYPE"}  # python's own locale coercion
    assert env_seen == env
    assert (seen["cwd"], seen["uid"], seen["hostname"]) == ("/workspace/run", 1000, "probe")
    assert seen["groups"] == [2345, 3456]
    assert seen["ro"] == "hi" and seen["ro_error"] == 30  # EROFS
    assert seen["file"] == "lr: 0.1" and seen["nested"] == ["app.yaml"] and seen["token"] == "jwt"
    assert (ckpt / "written-by-pod").read_text() == "checkpoint"
    assert (ckpt / "cfg").is_dir()  # a nested mount point lives in the outer volume, as with runc
    sandbox.close()
    after = host_state(manager.root, manager.prefix, "none")
    assert after[2] == before[2], "mount points were created on the host's /"
    assert not Path("/run/secrets").exists() and not Path("/workspace").exists()
    assert after == before


ESCAPER = """
import subprocess, time
print(subprocess.Popen(["setsid", "sleep", "60"]).pid, flush=True)
time.sleep(60)
"""


def test_a_volume_over_the_agents_own_state_dir_still_starts(manager: SandboxManager, tmp_path: Path) -> None:
    """Trainer pods mount an emptyDir at /tmp; the agent's state (and its namespace pins) may live under
    /tmp too, as pytest's does. The container must start and see only the volume there."""
    assert str(manager.ns_dir).startswith("/tmp/"), "the pins must sit under the volume for this to test anything"
    scratch = tmp_path / "emptydir"
    scratch.mkdir()
    (scratch / "marker").write_text("volume")
    p = pod("over-tmp")
    sandbox = manager.create(p)
    try:
        code = "import os; print(sorted(os.listdir('/tmp')), flush=True)"
        proc = sandbox.launch(launch(p, code, tmp_path / "over.log", mounts=[Mount(scratch, "/tmp")]))
        assert wait(proc) == 0, (tmp_path / "over.log").read_text()
        # Only the volume's content, plus the agent's own runtime paths bound back on top of it (a checkout
        # under /tmp); nothing else of the host's /tmp shows through.
        runtime = {p.split("/")[2] for p in sm.runtime_paths() if p.startswith("/tmp/")}
        assert (tmp_path / "over.log").read_text().strip() == str(sorted({"marker", *runtime}))
    finally:
        sandbox.close()


def test_nothing_is_left_behind(tmp_path: Path) -> None:
    state = tmp_path / "state"
    before = host_state(state, "tv", "tsbrul")
    m = SandboxManager(state, pod_cidr="10.252.0.0/24", bridge="tsbrul", prefix="tv")
    m.start()
    pids = []
    for i in range(2):
        p = pod(f"w-{i}")
        sandbox = m.create(p)
        # a grandchild in its own session escapes the process group; the namespace scan still finds it
        code = ESCAPER
        proc = sandbox.launch(launch(p, code, tmp_path / f"{i}.log"))
        pids.append(proc.pid)
    logs = [tmp_path / f"{i}.log" for i in range(2)]
    deadline = time.monotonic() + 10
    while not all(log.exists() and log.read_text().strip() for log in logs) and time.monotonic() < deadline:
        time.sleep(0.02)
    escaped = [int(log.read_text()) for log in logs]
    assert all(Path(f"/proc/{pid}").exists() for pid in escaped)
    assert Path("/sys/class/net/tsbrul").exists()
    m.cleanup_all()
    assert host_state(state, "tv", "tsbrul") == before
    assert not any(Path(f"/proc/{pid}").exists() for pid in pids)
    assert not list((state / "sandbox" / "pods").iterdir())
    for pid in escaped:  # killed even though they left the container's process group
        assert not Path(f"/proc/{pid}").exists() or Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"


CRASHING_AGENT = """
import os, sys
from pathlib import Path
from trainsmart.devcluster.agent.sandbox.manager import SandboxManager
from trainsmart.devcluster.agent.pod_runtime_contract import ContainerLaunch
m = SandboxManager(Path(sys.argv[1]), pod_cidr="10.253.0.0/24", bridge="tsbrcr", prefix="tw")
m.start()
p = {"metadata": {"name": "x", "namespace": "ns", "uid": "crash-uid"}, "spec": {}, "status": {}}
s = m.create(p)
env = {"PATH": "/usr/bin:/bin"}
proc = s.launch(ContainerLaunch("crash-uid", "ns", "x", "main", ["sleep", "60"], env, Path(sys.argv[1]) / "log"))
print(proc.pid, flush=True)
os._exit(0)  # no cleanup at all, as if killed
"""


def test_a_crashed_agents_leftovers_are_removed(tmp_path: Path) -> None:
    before = host_state(tmp_path, "tw", "tsbrcr")
    crashed = subprocess.run([PY, "-c", CRASHING_AGENT, str(tmp_path)], check=True, timeout=30, capture_output=True)
    container_pid = int(crashed.stdout)
    assert host_state(tmp_path, "tw", "tsbrcr") != before  # bridge, veth, pins and a container are left
    assert Path(f"/proc/{container_pid}").exists()
    m = SandboxManager(tmp_path, pod_cidr="10.253.0.0/24", bridge="tsbrcr", prefix="tw")
    m.start()  # cleans what the crashed one recorded
    assert not list((tmp_path / "sandbox" / "ns").iterdir())
    deadline = time.monotonic() + 5
    while Path(f"/proc/{container_pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.02)  # killed; its parent is gone, so init reaps it
    assert (
        not Path(f"/proc/{container_pid}").exists() or "Z" in Path(f"/proc/{container_pid}/stat").read_text().split()[2]
    )
    m.cleanup_all()
    assert host_state(tmp_path, "tw", "tsbrcr") == before


def test_one_manager_per_bridge(manager: SandboxManager, tmp_path: Path) -> None:
    other = SandboxManager(tmp_path, pod_cidr="10.254.0.0/24", bridge=manager.bridge, prefix="tx")
    with pytest.raises(BridgeBusyError):
        other.start()
    other.cleanup_all()


def test_host_fallback(tmp_path: Path) -> None:
    m = SandboxManager(tmp_path, isolation="host")
    m.start()
    try:
        assert (m.gateway_ip, m.isolated) == ("127.0.0.1", False)
        p = pod("h", subdomain=None)
        sandbox = m.create(p)
        assert sandbox.ip == "127.0.0.1"
        assert wait(sandbox.launch(launch(p, "print('ok')", tmp_path / "log"))) == 0
        with pytest.raises(SandboxError, match="without root"):
            sandbox.launch(launch(p, "pass", tmp_path / "log", mounts=[Mount(tmp_path, "/elsewhere")]))
        sandbox.close()
    finally:
        m.cleanup_all()


def test_create_and_launch_are_fast(manager: SandboxManager, tmp_path: Path) -> None:
    vol = tmp_path / "ckpt"
    vol.mkdir()
    timings, sandboxes = [], []
    for i in range(10):
        p = pod(f"fast-{i}")
        started = time.perf_counter()
        sandbox = manager.create(p)
        proc = sandbox.launch(
            ContainerLaunch(
                p["metadata"]["uid"], "ns", p["metadata"]["name"], "main", ["sleep", "5"], {"PATH": "/usr/bin:/bin"},
                tmp_path / f"{i}.log", mounts=[Mount(vol, "/checkpoints")],
            )
        )  # fmt: skip
        timings.append(time.perf_counter() - started)
        sandboxes.append((sandbox, proc))
    for sandbox, proc in sandboxes:
        proc.terminate(1)
        sandbox.close()
    print(f"create+launch: median {statistics.median(timings) * 1000:.0f} ms, max {max(timings) * 1000:.0f} ms")
    assert statistics.median(timings) < 0.5


NON_ROOT_AGENT = """
import sys
from pathlib import Path
from trainsmart.devcluster.agent.sandbox.manager import SandboxManager
from trainsmart.devcluster.agent.pod_runtime_contract import ContainerLaunch
m = SandboxManager(Path(sys.argv[1]))
m.start()
s = m.create({"metadata": {"name": "x", "namespace": "ns", "uid": "u"}, "spec": {}, "status": {}})
p = s.launch(ContainerLaunch("u", "ns", "x", "main", ["true"], {"PATH": "/usr/bin:/bin"}, Path(sys.argv[1]) / "log"))
while p.poll() is None:
    pass
print(m.isolated, m.gateway_ip, s.ip, p.poll())
m.cleanup_all()
"""


def test_without_root_it_falls_back_to_host_networking_with_a_warning() -> None:
    state = Path(tempfile.mkdtemp(prefix="ts-nonroot-"))  # pytest's tmp dirs are root-only
    state.chmod(0o777)
    try:
        result = subprocess.run(
            ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", PY, "-c", NON_ROOT_AGENT, str(state)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        shutil.rmtree(state)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "127.0.0.1", "127.0.0.1", "0"]
    assert "HOST NETWORKING" in result.stderr
