"""Wall time of the whole workflow at two git revisions, back to back on this machine, and whether they
produce the same results.

    python benchmarks/default_run.py --baseline 9866cf3                 # vs HEAD, the reference config
    python benchmarks/default_run.py --baseline 9866cf3 --config .test/config/config.yaml --repeats 2
    python benchmarks/default_run.py --baseline 9866cf3 --config own     # each revision's own default run

Each run is a fresh clone of this repository checked out at the revision, with the chosen config file
copied in (the same bytes for both revisions: the reference config, ``benchmarks/reference_config.yaml``,
is the default config as filed with issue 17), then ``snakemake --cores N --configfile <it>``; the clock
covers that command only. Runs alternate baseline / candidate and repeat; the table gives every wall time,
the medians and the ratio candidate / baseline. Do not time the full default config on a shared machine:
performance claims need a quiet one.

Results: every ``.npz``, ``.npy``, ``.csv``, ``.parquet`` and ``.safetensors`` under ``results/`` of the
last baseline run is compared with the candidate's (``results/benchmarks`` - timings - excepted; figures,
reports and Markdown are renderings of those tables and are not compared). Default tolerance: none
(byte-equal arrays and equal tables), because a CPU run of this project is bit-reproducible for a given
thread count; ``--atol``/``--rtol`` accept float-level differences (e.g. a changed kernel). Columns or
arrays only one side has (a feature added in between) are listed, not failed. Exit status 1 if any
compared value differs beyond the tolerance.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
COMPARED = (".npz", ".npy", ".csv", ".parquet", ".safetensors")


def git(*args: str, cwd: Path = REPO) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def clone(revision: str, dest: Path, config: Path | None) -> Path:
    """A clone at ``revision`` with ``config`` copied in (None: the revision runs its own default config)."""
    subprocess.run(["git", "clone", "--quiet", "--no-checkout", str(REPO), str(dest)], check=True)
    git("checkout", "--quiet", revision, cwd=dest)
    if config is not None:
        shutil.copy(config, dest / "benchmark_config.yaml")
    return dest


def run_workflow(workdir: Path, cores: int, timeout: int) -> tuple[float, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # each clone imports its own src/
    cmd = [sys.executable, "-m", "snakemake", "--cores", str(cores)]
    if (workdir / "benchmark_config.yaml").exists():
        cmd += ["--configfile", "benchmark_config.yaml"]
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True, timeout=timeout)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"snakemake failed in {workdir} ({proc.returncode}):\n{proc.stderr[-4000:]}")
    done = [line for line in proc.stderr.splitlines() if "steps (100%) done" in line]
    return seconds, (done[-1].split(" of ")[-1].split(" steps")[0] if done else "?")


# comparison -----------------------------------------------------------------------------------------------


def load_file(path: Path) -> dict[str, np.ndarray] | object:
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    if path.suffix == ".npy":
        return {"array": np.load(path, allow_pickle=False)}
    if path.suffix == ".safetensors":
        from safetensors.numpy import load_file as load_st

        return load_st(str(path))
    import pandas as pd

    return pd.read_csv(path) if path.suffix == ".csv" else pd.read_parquet(path)


def compare_arrays(a: np.ndarray, b: np.ndarray, atol: float, rtol: float) -> tuple[bool, float]:
    """(within tolerance, max |a - b| over finite entries); NaNs must sit at the same places."""
    if a.shape != b.shape or a.dtype.kind != b.dtype.kind:
        return False, float("inf")
    if a.dtype.kind not in "fc":
        return bool(np.array_equal(a, b)), 0.0 if np.array_equal(a, b) else float("inf")
    if np.array_equal(a, b, equal_nan=True):
        return True, 0.0
    nan_a, nan_b = np.isnan(a), np.isnan(b)
    both = ~(nan_a | nan_b)
    delta = float(np.max(np.abs(a[both] - b[both]), initial=0.0))
    return bool((nan_a == nan_b).all() and np.allclose(a[both], b[both], atol=atol, rtol=rtol)), delta


def compare_tables(a, b, atol: float, rtol: float) -> tuple[bool, float, list[str]]:
    common = [c for c in a.columns if c in b.columns]
    notes = [f"only baseline: {c}" for c in a.columns if c not in b.columns]
    notes += [f"only candidate: {c}" for c in b.columns if c not in a.columns]
    if len(a) != len(b):
        return False, float("inf"), notes + [f"{len(a)} vs {len(b)} rows"]
    ok, worst = True, 0.0
    for c in common:
        x, y = a[c].to_numpy(), b[c].to_numpy()
        if x.dtype.kind in "fiub" and y.dtype.kind in "fiub":
            same, delta = compare_arrays(x.astype(np.float64), y.astype(np.float64), atol, rtol)
        else:
            same, delta = bool((a[c].astype(str) == b[c].astype(str)).all()), 0.0
        if not same:
            notes.append(f"{c} differs (max |Δ| {delta:.3g})")
        ok &= same
        worst = max(worst, delta if np.isfinite(delta) else 0.0)
    return ok, worst, notes


def compare_results(base: Path, cand: Path, atol: float, rtol: float) -> tuple[bool, list[str]]:
    files = lambda root: {p.relative_to(root) for p in (root / "results").rglob("*")  # noqa: E731
                          if p.suffix in COMPARED and "benchmarks" not in p.parts}
    left, right = files(base), files(cand)
    lines, ok, counts = [], True, {"identical": 0, "within tolerance": 0, "different": 0}
    for rel in sorted(left & right):
        a, b = load_file(base / rel), load_file(cand / rel)
        if isinstance(a, dict):
            notes = [f"only baseline: {k}" for k in a if k not in b] + [f"only candidate: {k}" for k in b if k not in a]
            results = {k: compare_arrays(a[k], b[k], atol, rtol) for k in a if k in b}
            same = all(r[0] for r in results.values())
            worst = max((r[1] for r in results.values()), default=0.0)
            identical = all(np.array_equal(a[k], b[k], equal_nan=a[k].dtype.kind in "fc") for k in results)
            notes += [f"{k} max |Δ| {r[1]:.3g}" for k, r in results.items() if r[1] > 0]
        else:
            same, worst, notes = compare_tables(a, b, atol, rtol)
            identical = same and worst == 0.0
        kind = "identical" if identical else ("within tolerance" if same else "different")
        counts[kind] += 1
        ok &= same
        if kind != "identical" or notes:
            lines.append(f"  {rel}: {kind}" + (f" ({'; '.join(notes)})" if notes else ""))
    for rel in sorted(left - right):
        lines.append(f"  {rel}: only in the baseline")
    for rel in sorted(right - left):
        lines.append(f"  {rel}: only in the candidate")
    summary = ", ".join(f"{n} {k}" for k, n in counts.items())
    return ok, [f"compared {len(left & right)} result files: {summary}"] + lines


def klom_p95_delta(base: Path, cand: Path) -> str:
    import pandas as pd

    path = Path("results/klom_summary.csv")
    if not (base / path).exists() or not (cand / path).exists():
        return "klom_summary.csv missing"
    keys = ["forget_set", "method", "run", "epoch", "group"]
    a, b = pd.read_csv(base / path), pd.read_csv(cand / path)
    # a summary with a selection sample has a row per sample: match its report rows with a summary from
    # before the selection sample (whose runs were all scored on the report models), and sample with sample
    if "sample" in a and "sample" in b:
        keys.append("sample")
    else:
        a, b = (t[t["sample"] == "report"] if "sample" in t else t for t in (a, b))
    merged = a[keys + ["p95"]].merge(b[keys + ["p95"]], on=keys, suffixes=("_base", "_cand"))
    delta = (merged.p95_base - merged.p95_cand).abs()
    return f"klom_summary p95: {len(merged)} rows matched, max |Δ| {delta.max():.3g}, mean |Δ| {delta.mean():.3g}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline", required=True, help="git revision to compare against (e.g. the commit before a change)")
    parser.add_argument("--candidate", default="HEAD", help="git revision to time (default HEAD: commit your work first)")
    parser.add_argument("--config", default=str(REPO / "benchmarks/reference_config.yaml"),
                        help="config file used for both (default: the reference config); 'own': each revision "
                             "runs its own config/config.yaml (the default run as it was at that revision)")
    parser.add_argument("--repeats", type=int, default=1, help="runs of each revision, alternating")
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--atol", type=float, default=0.0)
    parser.add_argument("--rtol", type=float, default=0.0)
    parser.add_argument("--timeout", type=int, default=7200, help="seconds per snakemake run")
    parser.add_argument("--keep", action="store_true", help="keep the clones (their paths are printed)")
    args = parser.parse_args(argv)

    config = None if args.config == "own" else Path(args.config).resolve()
    revisions = {"baseline": git("rev-parse", args.baseline), "candidate": git("rev-parse", args.candidate)}
    root = Path(tempfile.mkdtemp(prefix="default_run."))
    times: dict[str, list[float]] = {"baseline": [], "candidate": []}
    last: dict[str, Path] = {}
    try:
        for r in range(args.repeats):
            for name in (("baseline", "candidate") if r % 2 == 0 else ("candidate", "baseline")):
                workdir = clone(revisions[name], root / f"{name}-{r}", config)
                seconds, jobs = run_workflow(workdir, args.cores, args.timeout)
                times[name].append(seconds)
                print(f"run {r + 1}/{args.repeats} {name} {revisions[name][:10]}: {seconds:.1f} s ({jobs} jobs)",
                      flush=True)
                if name in last and not args.keep:
                    shutil.rmtree(last[name])
                last[name] = workdir
        base, cand = statistics.median(times["baseline"]), statistics.median(times["candidate"])
        print(f"\nconfig {config or 'each revision its own config/config.yaml'}, snakemake --cores {args.cores}, {args.repeats} run(s) each")
        print(f"baseline  {revisions['baseline'][:10]}: " + ", ".join(f"{t:.1f}" for t in times["baseline"])
              + f" s (median {base:.1f} s)")
        print(f"candidate {revisions['candidate'][:10]}: " + ", ".join(f"{t:.1f}" for t in times["candidate"])
              + f" s (median {cand:.1f} s)")
        print(f"ratio candidate / baseline = {cand / base:.3f} (speed-up {base / cand:.2f}x)")
        tolerance = "exact" if args.atol == 0 and args.rtol == 0 else f"atol {args.atol:g}, rtol {args.rtol:g}"
        ok, lines = compare_results(last["baseline"], last["candidate"], args.atol, args.rtol)
        print(f"\nresults ({tolerance}): {'EQUAL' if ok else 'DIFFERENT'}")
        print("\n".join(lines))
        print(klom_p95_delta(last["baseline"], last["candidate"]))
        if args.keep:
            print(f"clones kept under {root}")
        return 0 if ok else 1
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
