"""Keep the memory a CPU job frees for its next tensors, instead of handing it back to the kernel at once.

A stacked forward or backward pass allocates and frees activations of megabytes at every layer. With
glibc's defaults a block over the *mmap threshold* (128 KiB, raised on the fly only up to the largest
block freed so far) is mapped fresh and unmapped when freed, and free memory above the *trim threshold*
at the top of the heap goes back to the kernel: the next tensor of the same size then page-faults in
freshly zeroed pages, and in a digits job that costs as much as the arithmetic of the element-wise layers.
:func:`keep_freed_memory` sets both thresholds once per job (``mallopt``; the equivalent of the
``MALLOC_MMAP_THRESHOLD_`` and ``MALLOC_TRIM_THRESHOLD_`` environment variables), so blocks up to
:data:`MMAP_THRESHOLD` come from the heap and up to :data:`TRIM_THRESHOLD` of freed heap stays mapped for
reuse. ``benchmarks/freed_memory.py`` measures the effect on one job of each torch kind.

What it does not change: any number. Memory placement is not arithmetic - torch aligns every CPU tensor
to 64 bytes either way - so results are the same bytes (the benchmark and ``tests/test_memory.py``
compare them). What changes in memory: freed memory stays with the job's process until it exits, up to
:data:`TRIM_THRESHOLD` at the top of the heap, and blocks under :data:`MMAP_THRESHOLD` share the heap, where
they can fragment it; a job's resident size stays near its peak use instead of shrinking after it. GPU
memory is not malloc's. Other C libraries (macOS, musl) are left as they are.
"""

from __future__ import annotations

import ctypes
import sys

# mallopt parameters (glibc's malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 * 1024 * 1024  # the largest glibc accepts on 64-bit (HEAP_MAX_SIZE / 2)
TRIM_THRESHOLD = 1024 * 1024 * 1024


def keep_freed_memory() -> bool:
    """Set this process's malloc thresholds (see the module); True where glibc took them, False elsewhere."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    # mmap threshold first: setting either switches glibc's dynamic thresholds off, and a trim threshold
    # alone would leave every block over 128 KiB to mmap
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
