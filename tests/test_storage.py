import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from unlearnbench.storage import (
    STALE_AFTER_S,
    ArtefactError,
    UserInputError,
    atomic_path,
    load_arrays,
    load_npy,
    load_tensors,
    save_arrays,
    save_tensors,
    sweep_stale_temp_files,
)


def test_arrays_round_trip(tmp_path):
    save_arrays(tmp_path / "a.npz", margins=np.arange(6, dtype=np.float32).reshape(2, 3))
    assert load_arrays(tmp_path / "a.npz")["margins"].tolist() == [[0, 1, 2], [3, 4, 5]]


def test_truncated_file_names_the_file_and_how_to_rebuild(tmp_path):
    path = tmp_path / "m.npz"
    save_arrays(path, margins=np.ones((50, 50), dtype=np.float32))
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(ArtefactError) as err:
        load_arrays(path)
    assert str(path) in str(err.value) and "rebuild" in str(err.value)


def test_corrupt_weights_name_the_file(tmp_path):
    path = tmp_path / "w.safetensors"
    save_tensors(path, {"w": torch.ones(3)})
    assert load_tensors(path)[0]["w"].tolist() == [1, 1, 1]
    path.write_bytes(b"garbage" * 10)
    with pytest.raises(ArtefactError, match="w.safetensors"):
        load_tensors(path)


def test_pickled_arrays_are_refused(tmp_path):
    path = tmp_path / "p.npz"
    np.savez(path, obj=np.array([{"a": 1}], dtype=object))
    with pytest.raises(ArtefactError):
        load_arrays(path)


def test_failed_write_leaves_no_file(tmp_path):
    target = tmp_path / "out.npz"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("killed")
    assert not target.exists() and list(tmp_path.iterdir()) == []


def test_safetensors_metadata_is_written_in_sorted_order(tmp_path):
    import json
    import struct

    path = tmp_path / "w.safetensors"
    metadata = {k: str(i) for i, k in enumerate("zyxwvutsrq")}
    save_tensors(path, {"b": torch.zeros(2), "a": torch.ones(3)}, metadata)
    raw = path.read_bytes()
    (length,) = struct.unpack("<Q", raw[:8])
    assert length % 8 == 0
    header = json.loads(raw[8:8 + length])
    assert list(header["__metadata__"]) == sorted(metadata)
    tensors, read_back = load_tensors(path)
    assert read_back == metadata and tensors["a"].tolist() == [1, 1, 1] and tensors["b"].tolist() == [0, 0]


def test_a_users_file_is_never_advised_to_be_deleted(tmp_path):
    path = tmp_path / "mine.npy"
    path.write_bytes(b"not an array")
    with pytest.raises(UserInputError) as err:
        load_npy(path, user_input="the file of forget set 4, an input you supplied")
    message = str(err.value)
    assert str(path) in message and "forget set 4" in message and "never rebuilds or deletes it" in message
    assert "Delete it" not in message and "--forcerun" not in message
    with pytest.raises(ArtefactError, match="Delete it and rebuild it"):  # a workflow output may be rebuilt
        load_npy(path)


# stale temp files ------------------------------------------------------------------------------------------

WRITER = (
    "import sys, time\n"
    "from unlearnbench.storage import atomic_path\n"
    "with atomic_path(sys.argv[1]) as tmp, open(tmp, 'wb') as fh:\n"
    "    fh.write(b'half'); fh.flush()\n"
    "    print(tmp, flush=True); time.sleep(120)\n"
)


def age(path, seconds):
    old = time.time() - seconds
    os.utime(path, (old, old))


def test_the_sweep_removes_only_old_temp_files_nobody_holds(tmp_path):
    results = tmp_path / "results"
    (results / "a" / "b").mkdir(parents=True)
    dead = results / "a" / "b" / ".margins.npz.k3j_x9q2.tmp"  # left by a killed writer
    fresh = results / "a" / ".weights.safetensors.abcd1234.tmp"  # a writer may still be starting
    others = [results / "a" / ".hidden.tmp", results / "a" / "notes.tmp", results / ".x.abcd1234.tmp.npy",
              results / "a" / "margins.npz"]
    for path in [dead, fresh, *others]:
        path.write_bytes(b"x")
    for path in [dead, *others]:
        age(path, STALE_AFTER_S + 60)

    # a live writer's temp file, as old as the dead one (a long write): locked, so it stays
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(results / "a" / "big.npz")], stdout=subprocess.PIPE,
                              text=True)
    live = Path(writer.stdout.readline().strip())
    age(live, STALE_AFTER_S + 60)
    try:
        assert sweep_stale_temp_files(results) == [dead]
        assert live.exists() and fresh.exists() and all(p.exists() for p in others)
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.wait()
    # killed: the kernel released its lock, the file is stale now
    assert live.exists() and sweep_stale_temp_files(results) == [live]
    assert fresh.exists() and sweep_stale_temp_files(results, stale_after_s=0) == [fresh]
    assert all(p.exists() for p in others)
