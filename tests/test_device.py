"""Each GPU job claims a free device itself (Snakemake's gpu resource only counts them)."""

import subprocess
import sys

import torch

from unlearnbench import device


def fake_gpus(monkeypatch, tmp_path, n):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: n > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: n)
    monkeypatch.setenv("UNLEARNBENCH_GPU_LOCK_DIR", str(tmp_path))


def test_cpu_when_asked_or_when_no_gpu(monkeypatch, tmp_path):
    fake_gpus(monkeypatch, tmp_path, 0)
    assert device.claim_device("cpu") == "cpu"
    assert device.claim_device("auto") == "cpu"


def test_jobs_get_distinct_gpus_then_fall_back_to_cpu(monkeypatch, tmp_path):
    fake_gpus(monkeypatch, tmp_path, 2)
    monkeypatch.setattr(device, "_held_locks", [])
    # another process holds GPU 0 (a lock file locked by a live process)
    holder = subprocess.Popen([sys.executable, "-c", (
        "import fcntl, sys, time; f = open(sys.argv[1], 'w'); fcntl.flock(f, fcntl.LOCK_EX); "
        "print('locked', flush=True); time.sleep(30)"), str(tmp_path / "gpu0.lock")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert device.claim_device("auto") == "cuda:1"
        assert device.claim_device("auto") == "cpu"  # both busy
    finally:
        holder.kill()


def test_slurm_narrowed_devices_lock_by_physical_id(monkeypatch, tmp_path):
    fake_gpus(monkeypatch, tmp_path, 1)
    monkeypatch.setattr(device, "_held_locks", [])
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")
    assert device.claim_device("auto") == "cuda:0"
    assert (tmp_path / "gpu3.lock").exists()
