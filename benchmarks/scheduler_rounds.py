"""Snakemake's scheduling rounds and its own CPU time with and without ``unlearnbench.rescheduling``.

    python benchmarks/scheduler_rounds.py                   # 60 jobs of 1 s on 2 cores, 2 runs of each
    python benchmarks/scheduler_rounds.py --jobs 120 --seconds 2 --repeats 3

A throwaway workflow of ``--jobs`` independent jobs, each a shell ``sleep`` of ``--seconds``, runs through
``snakemake --cores N`` twice per repeat, alternating: as Snakemake ships it ("upstream") and with
:func:`unlearnbench.rescheduling.install` called from the Snakefile ("one timer"). The Snakefile counts the
scheduler's rounds (calls of ``JobScheduler.job_selector``) and reads the Snakemake process's own CPU time
(all its threads, not the jobs') when the run ends; the script prints both, the wall time of each run and
the ratios one timer / upstream. The jobs do no work, so what differs is the scheduler's own cost.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"

SNAKEFILE = """
import json, resource
from snakemake.scheduling.job_scheduler import JobScheduler

if config["one_timer"]:
    from unlearnbench.rescheduling import install
    install()

ROUNDS = [0]
_select = JobScheduler.job_selector


def counted(self, jobs):
    ROUNDS[0] += 1
    return _select(self, jobs)


JobScheduler.job_selector = counted


rule all:
    input:
        expand("done/{i}", i=range(config["jobs"])),


rule job:
    output:
        "done/{i}",
    params:
        seconds=config["seconds"],
    shell:
        "sleep {params.seconds} && touch {output}"


onsuccess:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    with open("stats.json", "w") as f:
        json.dump({"rounds": ROUNDS[0], "cpu_s": usage.ru_utime + usage.ru_stime}, f)
"""


def run_once(one_timer: bool, jobs: int, seconds: float, cores: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="scheduler-rounds-") as work:
        Path(work, "Snakefile").write_text(SNAKEFILE)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(SRC), os.getenv("PYTHONPATH")]))}
        cmd = [sys.executable, "-m", "snakemake", "--cores", str(cores), "--quiet", "all",
               "--config", f"one_timer={one_timer}", f"jobs={jobs}", f"seconds={seconds}"]
        start = time.perf_counter()
        proc = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - start
        if proc.returncode != 0:
            sys.exit(f"snakemake failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
        stats = json.loads(Path(work, "stats.json").read_text())
    return {**stats, "wall_s": wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=60)
    parser.add_argument("--seconds", type=float, default=1.0, help="each job's sleep")
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()

    results: dict[str, list[dict]] = {"upstream": [], "one timer": []}
    for r in range(args.repeats):
        for name, one_timer in (("upstream", False), ("one timer", True)):
            out = run_once(one_timer, args.jobs, args.seconds, args.cores)
            results[name].append(out)
            print(f"run {r + 1}/{args.repeats} {name:9s}: {out['rounds']:6d} rounds, Snakemake CPU "
                  f"{out['cpu_s']:6.2f} s, wall {out['wall_s']:6.2f} s", flush=True)

    med = {name: {k: statistics.median(o[k] for o in runs) for k in ("rounds", "cpu_s", "wall_s")}
           for name, runs in results.items()}
    print(f"\n{args.jobs} jobs of {args.seconds:g} s, snakemake --cores {args.cores}, medians of {args.repeats}:")
    for k, label in (("rounds", "scheduling rounds"), ("cpu_s", "Snakemake CPU s"), ("wall_s", "wall s")):
        up, one = med["upstream"][k], med["one timer"][k]
        print(f"  {label:18s} upstream {up:9.2f}   one timer {one:9.2f}   ratio one timer / upstream {one / up:.3f}")


if __name__ == "__main__":
    main()
