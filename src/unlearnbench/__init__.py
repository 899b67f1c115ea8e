"""unlearnbench: measure how well a machine-unlearning method removes data from a trained classifier.

The library knows nothing about Snakemake: functions take arrays or paths and return arrays.
The workflow in ``workflow/`` wires them into a cached DAG.
"""

__version__ = "0.1.0"
