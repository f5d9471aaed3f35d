"""Device choice and the multi-process launch plan (pure functions).

Pins:
- simulated GPUs -> CPU, announced as simulated; requested GPUs without CUDA -> DeviceError naming the
  variable; `all`/`void`/empty are not a request; a worker without its own GPU is an error;
- a worker (LOCAL_RANK or torchrun's TORCHELASTIC_RUN_ID set) never launches;
- PET_* with nproc > 1 plans one worker per process with global ranks node_rank * nproc + local_rank;
  nproc == 1 runs in-process with the classic variables filled in;
- exit codes combine as permanent > retryable (crashes, signals) > terminated > early stopped > success.
"""

from __future__ import annotations

import pytest

from trainsmart_trainer import contract
from trainsmart_trainer.contract import ExitCode
from trainsmart_trainer.ddp import DistConfigError, dist_info_from_env
from trainsmart_trainer.device import CudaProbe, DeviceError, requested_gpus, resolve_device
from trainsmart_trainer.launch import combine_exit_codes, plan_launch

NO_CUDA = CudaProbe(available=False, error="this torch build has no CUDA support")


def test_simulated_gpus_run_on_the_cpu_and_say_so() -> None:
    plan = resolve_device(simulated=True, visible_devices="1,3", cuda=NO_CUDA)
    assert (plan.type, plan.simulated_gpus, plan.gpus, plan.torch_device) == ("cpu", True, 2, "cpu")
    assert "simulated" in plan.announcement and contract.SIMULATED_GPUS in plan.announcement


def test_requested_gpus_without_cuda_fail_fast_with_a_clear_message() -> None:
    with pytest.raises(DeviceError, match=r"NVIDIA_VISIBLE_DEVICES=0,1.*CUDA is unusable.*no CUDA support"):
        resolve_device(simulated=False, visible_devices="0,1", cuda=NO_CUDA)
    with pytest.raises(DeviceError):
        resolve_device(simulated=False, visible_devices="GPU-5b2c0f1e-aaaa", cuda=NO_CUDA)


@pytest.mark.parametrize("value", [None, "", "all", "void", "none", "ALL"])
def test_values_that_are_not_a_gpu_request(value: str | None) -> None:
    assert requested_gpus(value) == []
    plan = resolve_device(simulated=False, visible_devices=value, cuda=NO_CUDA)
    assert (plan.type, plan.simulated_gpus) == ("cpu", False)


def test_cuda_picks_the_local_rank_gpu() -> None:
    cuda = CudaProbe(available=True, count=2, names=("H100", "H100"))
    plan = resolve_device(simulated=False, visible_devices="2,3", cuda=cuda, local_rank=1)
    assert (plan.torch_device, plan.name, plan.gpus) == ("cuda:1", "H100", 2)
    with pytest.raises(DeviceError, match="LOCAL_RANK=2"):
        resolve_device(simulated=False, visible_devices="2,3", cuda=cuda, local_rank=2)


def test_workers_never_launch() -> None:
    assert not plan_launch({contract.LOCAL_RANK: "0", contract.PET_NPROC_PER_NODE: "4"}).spawn
    assert not plan_launch({contract.TORCHELASTIC_RUN_ID: "x", contract.PET_NPROC_PER_NODE: "4"}).spawn
    assert plan_launch({}).in_process_env is None


def test_pet_variables_plan_one_worker_per_process() -> None:
    env = {
        contract.PET_NNODES: "2",
        contract.PET_NPROC_PER_NODE: "4",
        contract.PET_NODE_RANK: "1",
        contract.PET_MASTER_ADDR: "job-0.job",
        contract.PET_MASTER_PORT: "23456",
    }
    plan = plan_launch(env)
    assert plan.spawn and len(plan.worker_envs) == 4
    ranks = [int(w[contract.RANK]) for w in plan.worker_envs]
    assert ranks == [4, 5, 6, 7]
    first = plan.worker_envs[0]
    assert first[contract.WORLD_SIZE] == "8" and first[contract.LOCAL_WORLD_SIZE] == "4"
    assert (first[contract.MASTER_ADDR], first[contract.MASTER_PORT]) == ("job-0.job", "23456")
    assert dist_info_from_env(plan.worker_envs[3]).local_rank == 3


def test_one_process_per_pod_runs_in_process() -> None:
    env = {contract.PET_NNODES: "3", contract.PET_NPROC_PER_NODE: "1", contract.PET_NODE_RANK: "2",
           contract.PET_MASTER_ADDR: "m", contract.PET_MASTER_PORT: "1"}  # fmt: skip
    plan = plan_launch(env)
    assert not plan.spawn and plan.in_process_env is not None
    info = dist_info_from_env(plan.in_process_env)
    assert (info.rank, info.world_size, info.is_main) == (2, 3, False)


def test_standalone_override_uses_the_given_free_port() -> None:
    plan = plan_launch({}, nproc_override=2, free_port=40123)
    assert [w[contract.MASTER_PORT] for w in plan.worker_envs] == ["40123", "40123"]
    assert plan.worker_envs[0][contract.MASTER_ADDR] == "127.0.0.1"


def test_inconsistent_variables_are_refused() -> None:
    with pytest.raises(ValueError, match="inconsistent"):
        plan_launch({contract.PET_NPROC_PER_NODE: "2", contract.PET_NNODES: "2", contract.PET_NODE_RANK: "2"})
    with pytest.raises(DistConfigError):
        dist_info_from_env({contract.WORLD_SIZE: "2", contract.RANK: "0"})  # no master
    with pytest.raises(DistConfigError):
        dist_info_from_env({contract.WORLD_SIZE: "2", contract.RANK: "2", "MASTER_ADDR": "a", "MASTER_PORT": "1"})


@pytest.mark.parametrize(
    ("codes", "expected"),
    [
        ([0, 0], ExitCode.SUCCESS),
        ([12, 12], ExitCode.EARLY_STOPPED),
        ([13, 0], ExitCode.TERMINATED),
        ([13, 1], ExitCode.RETRYABLE_FAILURE),
        ([137, 0], ExitCode.RETRYABLE_FAILURE),
        ([10, 11], ExitCode.PERMANENT_FAILURE),
        ([0, 11, 13], ExitCode.PERMANENT_FAILURE),
    ],
)
def test_worker_exit_codes_combine_by_severity(codes: list[int], expected: ExitCode) -> None:
    assert combine_exit_codes(codes) == expected
