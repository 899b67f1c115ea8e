"""Test code run in a fresh interpreter: process-wide switches of one case (malloc's thresholds, torch's
deterministic mode and thread count) must not reach another, nor the test process."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

SRC = str(Path(__file__).resolve().parents[1] / "src")

# after the case's own set-up: 6 digits nets trained 2 epochs (3 per batch) and their margins; the last line
# printed is a digest of the margins and the weights
TRAIN_DIGEST = """
import hashlib, numpy as np, torch
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
print(digest.hexdigest())
"""


def python(code: str, *args: str) -> list[str]:
    """The lines ``code`` prints in a fresh interpreter with this checkout's library (and glibc's own malloc
    settings: the environment's are left out)."""
    env = {**os.environ, "PYTHONPATH": SRC}
    for name in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES"):
        env.pop(name, None)
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code), *args], env=env, check=True,
                          capture_output=True, text=True).stdout.strip().splitlines()
