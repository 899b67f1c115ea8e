"""Freed memory stays with a torch job (unlearnbench.memory): no page faults for reused sizes, same numbers.

Each case runs in a fresh interpreter: malloc's thresholds are per process and would leak into other tests.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from unlearnbench import memory

SRC = str(Path(__file__).resolve().parents[1] / "src")
PAGES_PER_TENSOR = 8 * 1024 * 1024 // 4096  # one 8 MB activation

# four 8 MB activations alive at once, then freed: a layer's worth of a stacked forward pass
FAULTS = """
import resource, torch
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
def layer():
    live = [torch.ones(2_000_000) for _ in range(4)]
    return sum(float(t[0]) for t in live)
for _ in range(3):
    layer()
before = faults()
for _ in range(20):
    layer()
print(faults() - before)
"""


def python(code: str) -> str:
    env = {**os.environ, "PYTHONPATH": SRC}
    for name in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES"):
        env.pop(name, None)
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, check=True,
                          capture_output=True, text=True).stdout.strip().splitlines()[-1]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc only")
def test_a_torch_job_reuses_freed_memory_without_page_faults():
    default = int(python(FAULTS))
    if default < PAGES_PER_TENSOR:
        pytest.skip(f"this C library keeps freed memory by default ({default} page faults)")
    # torch_setup is what every torch job calls first
    kept = int(python("from unlearnbench.device import torch_setup\ntorch_setup(1, 'cpu')\n" + FAULTS))
    assert kept < PAGES_PER_TENSOR // 4, (default, kept)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc only")
def test_keeping_freed_memory_changes_no_number():
    train = """
    import json, hashlib, numpy as np, torch
    from unlearnbench.memory import keep_freed_memory
    {switch}
    torch.set_num_threads(1)
    from unlearnbench.data import load_dataset
    from unlearnbench.margins import stack_outputs
    from unlearnbench.stack import ModelStack
    from unlearnbench.training import Recipe, train_stack
    data = load_dataset("digits")
    x, y = data.inputs(), torch.from_numpy(data.labels())
    stack = ModelStack.initialise("digits_cnn", 10, 1, range(6), range(6))
    recipe = Recipe(epochs=2, batch_size=32, lr=0.2, peak_epoch=1)
    train_stack(stack, x, y, np.arange(300), list(range(6)), recipe, models_per_batch=3)
    margins, _ = stack_outputs(stack, x, y)
    digest = hashlib.sha256(np.asarray(margins).tobytes())
    for name in sorted(stack.params):
        digest.update(stack.params[name].detach().numpy().tobytes())
    print(json.dumps(digest.hexdigest()))
    """
    kept = python(train.format(switch="assert keep_freed_memory()"))
    default = python(train.format(switch=""))
    assert json.loads(kept) == json.loads(default)


def test_other_platforms_are_left_alone(monkeypatch):
    monkeypatch.setattr(memory.sys, "platform", "darwin")
    assert memory.keep_freed_memory() is False
