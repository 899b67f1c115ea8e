"""Send a job's Python logging (and stray stderr) to its Snakemake ``log:`` file."""

from __future__ import annotations

import logging
import sys


def to_file(path: str) -> None:
    handle = open(path, "w", buffering=1)  # line-buffered: progress is visible while the job runs
    sys.stderr = handle
    logging.basicConfig(
        stream=handle, level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True
    )
