#!/usr/bin/env bash
# One command, one run: ResNet-9 training throughput (1 model, stacks of 5/10/25, k processes per GPU),
# TFLOP/s and fraction of peak, margin-pass speed and a small CIFAR-10 DAG through snakemake.
#   benchmarks/device_check.sh            # on a GPU machine (sized for <= 8 minutes on one H100/H200)
#   benchmarks/device_check.sh --smoke    # tiny sizes on the CPU (what CI runs)
# Options: benchmarks/device_check.sh --help. The checkout's library (src/) is used, installed or not.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export PYTHONPATH="${here}/../src${PYTHONPATH:+:${PYTHONPATH}}"
exec "${PYTHON:-python}" "${here}/device_check.py" "$@"
