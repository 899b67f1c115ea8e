"""Freed memory stays with a torch job (unlearnbench.memory): no page faults for reused sizes, same numbers.

Each case runs in a fresh interpreter: malloc's thresholds are per process and would leak into other tests.
"""

from __future__ import annotations

import sys

import fresh_python
import pytest
from fresh_python import TRAIN_DIGEST

from unlearnbench import memory

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
    return fresh_python.python(code)[-1]


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
    setup = "import torch\ntorch.set_num_threads(1)\n"
    keep = "from unlearnbench.memory import keep_freed_memory\nassert keep_freed_memory()\n"
    kept = python(keep + setup + TRAIN_DIGEST)
    default = python(setup + TRAIN_DIGEST)
    assert kept == default


def test_other_platforms_are_left_alone(monkeypatch):
    monkeypatch.setattr(memory.sys, "platform", "darwin")
    assert memory.keep_freed_memory() is False
