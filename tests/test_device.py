"""What a job declares is what it runs on: GPUs counted without torch, claimed with per-user locks."""

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import fresh_python
import pytest
import torch
import yaml
from fresh_python import TRAIN_DIGEST

from unlearnbench import device
from unlearnbench.config import ConfigError, validate

REPO = Path(__file__).resolve().parents[1]


def fake_gpus(monkeypatch, tmp_path, n):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: n > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: n)
    monkeypatch.setenv(device.LOCK_DIR_ENV, str(tmp_path))
    monkeypatch.setattr(device, "_held_locks", [])
    for name in ("CUDA_VISIBLE_DEVICES", "SLURM_JOB_GPUS", "SLURM_STEP_GPUS", "SLURM_JOB_ID"):
        monkeypatch.delenv(name, raising=False)


def hold(lock: Path, seconds: float = 30) -> subprocess.Popen:
    """Another process that holds ``lock`` for ``seconds``, then exits (and so releases it)."""
    proc = subprocess.Popen([sys.executable, "-c", (
        "import fcntl, sys, time; f = open(sys.argv[1], 'w'); fcntl.flock(f, fcntl.LOCK_EX); "
        "print('locked', flush=True); time.sleep(float(sys.argv[2]))"), str(lock), str(seconds)],
        stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_a_job_declaring_no_gpu_runs_on_the_cpu_and_takes_no_lock(monkeypatch, tmp_path):
    fake_gpus(monkeypatch, tmp_path, 2)
    assert device.device_request(0) == "cpu"
    assert device.claim_device(device.device_request(0)) == "cpu"
    assert list(tmp_path.iterdir()) == []


def test_a_job_declaring_a_gpu_fails_when_none_is_visible(monkeypatch, tmp_path):
    fake_gpus(monkeypatch, tmp_path, 0)
    with pytest.raises(device.NoGPUError, match="declares a GPU.*torch sees none.*resources.gpu: 0"):
        device.claim_device(device.device_request(1))
    assert device.claim_device("auto") == "cpu"  # library use outside the workflow may fall back


def test_gpu_jobs_get_distinct_gpus_and_wait_for_a_busy_one(monkeypatch, tmp_path):
    fake_gpus(monkeypatch, tmp_path, 2)
    monkeypatch.setattr(device, "POLL_S", 0.05)
    holder = hold(tmp_path / "gpu0-slot0.lock", seconds=1.5)  # another job holds GPU 0
    try:
        assert device.claim_device("cuda") == "cuda:1"
        start = time.monotonic()
        assert device.claim_device("cuda") == "cuda:0"  # waited for the holder, never the CPU
        assert time.monotonic() - start > 0.5
    finally:
        holder.kill()
    assert device.claim_device("auto") == "cpu"  # both taken by this process: library use falls back


def test_jobs_per_gpu_gives_each_gpu_k_slots(monkeypatch, tmp_path):
    fake_gpus(monkeypatch, tmp_path, 2)
    monkeypatch.setattr(device, "POLL_S", 0.05)
    request = device.device_request(1, jobs_per_gpu=2)
    assert request == "cuda/2"
    # slot-major: the GPUs fill evenly
    assert [device.claim_device(request) for _ in range(4)] == ["cuda:0", "cuda:1", "cuda:0", "cuda:1"]
    fifth = []
    waiter = threading.Thread(target=lambda: fifth.append(device.claim_device(request)), daemon=True)
    waiter.start()
    waiter.join(0.5)
    assert waiter.is_alive() and not fifth  # 2 GPUs x 2 slots are taken: the fifth job waits
    device._held_locks[1].close()  # the job on GPU 1, slot 0 ends
    waiter.join(10)
    assert fifth == ["cuda:1"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "gpu0-slot0.lock", "gpu0-slot1.lock", "gpu1-slot0.lock", "gpu1-slot1.lock"]


def test_locks_are_named_by_physical_gpu(monkeypatch, tmp_path):
    fake_gpus(monkeypatch, tmp_path, 1)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")
    assert device.claim_device("cuda") == "cuda:0"
    assert (tmp_path / "gpu3-slot0.lock").exists()


def test_no_locking_where_slurm_isolates_the_gpus(monkeypatch, tmp_path):
    fake_gpus(monkeypatch, tmp_path, 1)
    # any use of the lock folder would fail: it is a path under a plain file
    (tmp_path / "file").write_text("")
    monkeypatch.setenv(device.LOCK_DIR_ENV, str(tmp_path / "file" / "locks"))
    monkeypatch.setenv("SLURM_JOB_ID", "41")
    monkeypatch.setenv("SLURM_STEP_GPUS", "5")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")  # Slurm renumbers: every job sees "GPU 0"
    holder = hold(tmp_path / "gpu0-slot0.lock")  # a lock of another job on this node means nothing here
    try:
        assert device.claim_device("cuda") == "cuda:0"
    finally:
        holder.kill()


def test_several_slurm_gpus_are_shared_through_locks_private_to_the_allocation(monkeypatch, tmp_path):
    fake_gpus(monkeypatch, tmp_path, 2)
    monkeypatch.setenv("SLURM_JOB_ID", "42")
    monkeypatch.setenv("SLURM_JOB_GPUS", "6,7")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    holder = hold(tmp_path / "gpu0-slot0.lock")  # another allocation's "GPU 0": a different GPU
    try:
        assert [device.claim_device("cuda"), device.claim_device("cuda")] == ["cuda:0", "cuda:1"]
    finally:
        holder.kill()
    assert sorted(p.name for p in (tmp_path / "slurm-42").iterdir()) == ["gpu0-slot0.lock", "gpu1-slot0.lock"]


def test_the_lock_folder_is_the_users_own(monkeypatch, tmp_path):
    monkeypatch.delenv(device.LOCK_DIR_ENV, raising=False)
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr(device.tempfile, "tempdir", None)  # re-read TMPDIR
    assert device.lock_dir() == tmp_path / f"unlearnbench-gpu-locks-{os.getuid()}"
    runtime = tmp_path / "run-user"
    runtime.mkdir()
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    assert device.lock_dir() == runtime / "unlearnbench-gpu-locks"
    assert (runtime / "unlearnbench-gpu-locks").stat().st_mode & 0o777 == 0o700
    # a folder of that name that belongs to someone else is refused, with what to do instead
    monkeypatch.setattr(device.os, "getuid", lambda: os.stat(runtime).st_uid + 1)
    with pytest.raises(device.NoGPUError, match="belongs to another user.*UNLEARNBENCH_GPU_LOCK_DIR"):
        device.lock_dir()


def test_an_unusable_lock_folder_is_a_clear_error(monkeypatch, tmp_path):
    fake_gpus(monkeypatch, tmp_path, 1)
    (tmp_path / "file").write_text("")
    monkeypatch.setenv(device.LOCK_DIR_ENV, str(tmp_path / "file" / "locks"))
    with pytest.raises(device.NoGPUError, match="cannot keep the GPU locks in .*UNLEARNBENCH_GPU_LOCK_DIR"):
        device.claim_device("cuda")


def fake_driver(monkeypatch, tmp_path, n):
    gpus = tmp_path / "nvidia-gpus"
    for i in range(n):
        (gpus / f"0000:0{i}:00.0").mkdir(parents=True)
    monkeypatch.setattr(device, "NVIDIA_GPUS", gpus)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)


def test_visible_gpus_are_counted_from_the_driver_and_cuda_visible_devices(monkeypatch, tmp_path):
    fake_driver(monkeypatch, tmp_path, 4)
    assert device.visible_gpus() == 4
    for visible, expected in [("1,3", 2), ("", 0), ("-1", 0), ("0,-1,2", 1), ("GPU-8a1b,GPU-77c2", 2),
                              ("0,1,2,3,4,5", 4)]:
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
        assert device.visible_gpus() == expected, visible


def test_without_the_proc_listing_nvidia_smi_is_asked_with_a_timeout(monkeypatch, tmp_path):
    monkeypatch.setattr(device, "NVIDIA_GPUS", tmp_path / "absent")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    smi = bin_dir / "nvidia-smi"
    smi.write_text("#!/bin/sh\necho 'GPU 0: NVIDIA H100 (UUID: GPU-1)'\necho 'GPU 1: NVIDIA H100 (UUID: GPU-2)'\n")
    smi.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    assert device.visible_gpus() == 2
    smi.write_text("#!/bin/sh\nsleep 5\n")  # a hung driver
    monkeypatch.setattr(device, "NVIDIA_SMI_TIMEOUT_S", 0.5)
    assert device.visible_gpus() == 0
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert device.visible_gpus() == 0


def test_counting_gpus_does_not_import_torch():
    code = ("import sys\nfrom unlearnbench import device\ndevice.gpus_per_job('auto')\n"
            "assert 'torch' not in sys.modules\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_gpu_auto_follows_the_budget_then_the_host(monkeypatch, tmp_path, capsys):
    monkeypatch.delenv(device.GPUS_PER_JOB_ENV, raising=False)
    fake_driver(monkeypatch, tmp_path, 0)
    assert device.gpus_per_job("auto") == 0
    assert device.gpus_per_job("auto", budget=4) == 1  # snakemake --resources gpu=4
    assert device.gpus_per_job("auto", budget=0) == 0
    assert device.gpus_per_job("auto", "cuda") == 1 and device.gpus_per_job("auto", "cpu", budget=4) == 0
    assert device.gpus_per_job(0, budget=4) == 0 and device.gpus_per_job(1) == 1
    fake_driver(monkeypatch, tmp_path / "gpu-host", 2)
    assert device.gpus_per_job("auto") == 1
    assert "--resources gpu=2" in capsys.readouterr().err  # how to start no more jobs than GPUs


def test_the_jobs_reuse_the_main_process_answer(monkeypatch, tmp_path):
    """A compute node may show GPUs the scheduling host did not ask for: its jobs must not decide anew."""
    monkeypatch.delenv(device.GPUS_PER_JOB_ENV, raising=False)
    fake_driver(monkeypatch, tmp_path, 0)
    assert device.gpus_per_job("auto", main_process=True) == 0
    assert os.environ[device.GPUS_PER_JOB_ENV] == "0"
    fake_driver(monkeypatch, tmp_path / "node", 4)
    assert device.gpus_per_job("auto", main_process=False) == 0
    monkeypatch.delenv(device.GPUS_PER_JOB_ENV)
    assert device.gpus_per_job("auto", main_process=False) == 1


def test_device_requests():
    assert device.device_request(0) == "cpu"
    assert device.device_request(1) == "cuda"
    assert device.device_request(1, jobs_per_gpu=3) == "cuda/3"
    assert device.device_request(1, device="cpu") == "cpu"  # forced, e.g. a test cluster's fake GPUs
    with pytest.raises(ValueError, match="expected cpu, auto, cuda"):
        device.claim_device("cuda/0")


@pytest.mark.parametrize("resources, message", [
    ({"gpu": 2}, "config key resources.gpu: 2 is not one of"),  # a job runs on one device
    ({"gpu": 0, "device": "cuda"}, "config key resources.gpu: 0 (CPU jobs) contradicts resources.device: cuda"),
    ({"jobs_per_gpu": 0}, "config key resources.jobs_per_gpu"),
])
def test_gpu_settings_are_validated(resources, message):
    config = yaml.safe_load((REPO / "config/config.yaml").read_text())
    config["resources"].update(resources)
    with pytest.raises(ConfigError) as err:
        validate(config, REPO / "workflow/schemas/config.schema.yaml")
    assert message in str(err.value)


def test_gpu_defaults_to_auto_and_one_job_per_gpu():
    config = yaml.safe_load((REPO / ".test/config/config.yaml").read_text())
    validate(config, REPO / "workflow/schemas/config.schema.yaml")
    assert config["resources"]["gpu"] == "auto" and config["resources"]["jobs_per_gpu"] == 1


# torch_setup's switches are process-wide: each case runs in a fresh interpreter
SETUP = """
import sys, torch
from unlearnbench.device import torch_setup
torch_setup(1, "cpu")
if sys.argv[1] != "setup":
    torch.utils.deterministic.fill_uninitialized_memory = sys.argv[1] == "on"
print(torch.are_deterministic_algorithms_enabled(), torch.utils.deterministic.fill_uninitialized_memory)
"""


def setup_and_train(fill: str) -> list[str]:
    """The deterministic mode and fill after torch_setup (and the switch ``fill``), then the training digest."""
    switches, digest = fresh_python.python(SETUP + TRAIN_DIGEST, fill)[-2:]
    return [*switches.split(), digest]


def test_a_torch_job_is_deterministic_without_filling_new_tensors_and_gets_the_same_bytes():
    deterministic, fill, digest = setup_and_train("setup")
    assert deterministic == "True" and fill == "False"  # deterministic kernels, no NaN fill of every new tensor
    assert setup_and_train("on")[2] == setup_and_train("off")[2] == digest
