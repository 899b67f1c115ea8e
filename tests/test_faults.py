"""Faults, with real processes: a killed run, damaged artefacts, bad configs, a diverging method, pickles."""

from __future__ import annotations

import base64
import os
import pickle
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import REPO, TINY_CONFIG, planned_jobs, snakemake
from unlearnbench import storage
from unlearnbench.stages.margins import compute_margins
from unlearnbench.storage import ArtefactError
from unlearnbench import layout

DIGITS = layout.Layout("digits")  # the paths of a run on the digits data set

pytestmark = pytest.mark.workflow

TMP_NAME = re.compile(r"^\..+\.tmp$")  # storage.atomic_path's temp files


def tiny_config(workdir: Path) -> dict:
    return yaml.safe_load((workdir / TINY_CONFIG).read_text())


def write_config(workdir: Path, config: dict, name: str) -> str:
    (workdir / name).write_text(yaml.safe_dump(config))
    return name


def check_artefacts(results: Path) -> tuple[int, list[Path]]:
    """Load every artefact under ``results`` through unlearnbench.storage; return (count, temp files)."""
    loaders = {".npz": storage.load_arrays, ".npy": storage.load_npy, ".safetensors": storage.load_tensors,
               ".csv": storage.load_table, ".parquet": storage.load_table}
    count, leftovers = 0, []
    for path in sorted(results.rglob("*")):
        if not path.is_file():
            continue
        if TMP_NAME.match(path.name):
            leftovers.append(path)
        elif path.suffix in loaders:
            loaders[path.suffix](path)  # raises ArtefactError on a truncated or corrupt file
            count += 1
    return count, leftovers


def incomplete_outputs(workdir: Path) -> list[str]:
    """Outputs Snakemake marked as being written when the run died (.snakemake/incomplete/<base64 path>)."""
    paths = []
    folder = workdir / ".snakemake/incomplete"
    for marker in folder.iterdir() if folder.exists() else []:
        try:
            paths.append(base64.urlsafe_b64decode(marker.name).decode())
        except (ValueError, UnicodeDecodeError):
            continue
    return paths


# a killed run ----------------------------------------------------------------------------------------------


def test_sigkill_during_training_leaves_only_complete_artefacts_and_resumes_identically(tiny_run, workflow_copy):
    work = workflow_copy
    out = open(work / "killed.out", "w")
    proc = subprocess.Popen([sys.executable, "-m", "snakemake", "--cores", "2", "--configfile", TINY_CONFIG],
                            cwd=work, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    # kill the whole process group (snakemake and its jobs) once a shard of weights is complete and
    # another training job is still running
    deadline = time.monotonic() + 300
    try:
        while True:
            assert proc.poll() is None, "the run finished before it could be killed"
            assert time.monotonic() < deadline, "no training job started within 300 s"
            done = list((work / "results/weights").rglob("*.safetensors")) if (work / "results").exists() else []
            running = [log for log in (work / "logs").glob("train_*/**/*.log")
                       if "trained" not in log.read_text()] if (work / "logs").exists() else []
            if done and running:
                break
            time.sleep(0.1)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        out.close()
    time.sleep(0.5)

    count, leftovers = check_artefacts(work / "results")
    assert count >= 2  # at least the splits and a shard of weights
    # Snakemake marked the outputs of the jobs it had started and not yet seen finish: a marked output
    # that exists was completely written (it loaded above) just before the kill; --rerun-incomplete
    # rebuilds it either way
    marked = incomplete_outputs(work)
    assert any("results/weights" in p for p in marked), marked  # it did die inside a training job
    assert all(TMP_NAME.match(p.name) for p in leftovers)

    # a plain rerun refuses to trust the interrupted jobs' outputs (or the killed run's lock)
    proc = snakemake(work, "--configfile", TINY_CONFIG, check=False)
    text = (proc.stdout + proc.stderr).lower()
    assert proc.returncode != 0 and ("incomplete" in text or "lock" in text), text[-2000:]
    snakemake(work, "--unlock", "--configfile", TINY_CONFIG)
    snakemake(work, "--rerun-incomplete", "--configfile", TINY_CONFIG, timeout=1800)  # the rest of the tiny run
    reference = (tiny_run / layout.KLOM_SUMMARY).read_bytes()
    assert (work / layout.KLOM_SUMMARY).read_bytes() == reference
    check_artefacts(work / "results")
    # identical runs, identical bytes: every artefact (weights, margins, scores, tables, figures, HTML) of the
    # killed-and-resumed run equals the reference run's, made by other processes at other times
    assert artefact_bytes(work) == artefact_bytes(tiny_run)


def artefact_bytes(workdir: Path) -> dict[str, bytes]:
    """Every file under results/ except timings (benchmarks/) and the report (not a rule output)."""
    results = workdir / "results"
    return {str(p.relative_to(results)): p.read_bytes() for p in sorted(results.rglob("*"))
            if p.is_file() and p.parts[len(results.parts)] != "benchmarks" and not p.name.startswith("report")}


def test_a_killed_writer_leaves_no_file_under_the_final_name(tmp_path):
    final = tmp_path / "out" / "margins.npz"
    script = (
        "import sys, time\n"
        "from unlearnbench.storage import atomic_path\n"
        "with atomic_path(sys.argv[1]) as tmp, open(tmp, 'wb') as fh:\n"
        "    fh.write(b'PK\\x03\\x04' + bytes(4096)); fh.flush()\n"
        "    print(tmp, flush=True); time.sleep(60)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script, str(final)], stdout=subprocess.PIPE, text=True)
    tmp = Path(proc.stdout.readline().strip())
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert tmp.exists() and TMP_NAME.match(tmp.name) and not final.exists()
    with pytest.raises(ArtefactError, match="missing file"):
        storage.load_arrays(final)


def test_temp_files_of_killed_writers_are_swept_at_start(workflow_copy):
    target = Path(DIGITS.forget_set("1"))
    folder = workflow_copy / target.parent
    folder.mkdir(parents=True)
    dead, fresh = folder / f".{target.name}.ab12cd34.tmp", folder / f".{Path(DIGITS.forget_set('2')).name}.ef56gh78.tmp"
    for path in (dead, fresh):
        path.write_bytes(b"half-written")
    old = time.time() - storage.STALE_AFTER_S - 60
    os.utime(dead, (old, old))
    proc = snakemake(workflow_copy, str(target), "--configfile", TINY_CONFIG)
    assert not dead.exists() and f"removed stale temp file {target.parent}/{dead.name}" in proc.stdout
    assert fresh.exists()  # may belong to a writer that is still running
    assert (workflow_copy / target).exists()


# damaged artefacts -----------------------------------------------------------------------------------------

MARGINS = DIGITS.margins(layout.oracle_family("1"), 0)  # scored oracles (models 0-9 of N = 10)
WEIGHTS = DIGITS.weights("base", 0)


def test_damaged_margins_and_weights_are_named_with_how_to_rebuild_them(tiny_run, tmp_path):
    work = tmp_path / "damaged"
    shutil.copytree(tiny_run, work, symlinks=True)  # keeps mtimes and .snakemake: nothing to do in the copy
    data = (work / MARGINS).read_bytes()
    truncated = len(data) // 2
    (work / MARGINS).write_bytes(data[:truncated])  # truncated
    data = (work / WEIGHTS).read_bytes()
    (work / WEIGHTS).write_bytes(b"\xff" * 16 + data[16:])  # corrupt header, same size

    # the library names the file and how to rebuild it
    with pytest.raises(ArtefactError) as err:
        storage.load_arrays(work / MARGINS, storage.MARGINS_REQUIRED)
    assert str(work / MARGINS) in str(err.value) and "--forcerun" in str(err.value)
    with pytest.raises(ArtefactError) as err:
        compute_margins(str(work / WEIGHTS), str(work / DIGITS.splits),
                        str(tmp_path / "margins.npz"), device="auto", keep_logits=False, tta="none")
    assert str(work / WEIGHTS) in str(err.value) and "rebuild" in str(err.value)
    assert not (tmp_path / "margins.npz").exists()

    # through snakemake: the damaged files are newer than what was computed from them, so their
    # consumers rerun and fail (their producers do not: their own inputs are older)
    proc = snakemake(work, "--keep-going", "--show-failed-logs", "--configfile", TINY_CONFIG, check=False)
    text = proc.stdout + proc.stderr
    assert proc.returncode != 0
    for path, consumer_log in ((MARGINS, DIGITS.log("score_klom", DIGITS.scores("stats.csv")).format(method="oracle", run="default", forget_set=1, sample="report_epoch~0")),
                               (WEIGHTS, DIGITS.log("compute_margins", DIGITS.margins()).format(family="base", shard=0))):
        log = (work / consumer_log).read_text()
        message = f"{path}\n  The file is damaged or incomplete. Delete it and rebuild it"
        assert message in log, log[-3000:]
        assert f"--forcerun {path}" in log
        assert message in text  # --show-failed-logs puts it in front of the user
    assert "Error in rule compute_margins" in text and "Error in rule score_klom" in text
    assert (work / MARGINS).stat().st_size == truncated  # not silently rebuilt by rerunning its producer
    assert not re.search(r"Error in rule (train_oracle|train_base)", text)


# bad configs ---------------------------------------------------------------------------------------------


def _bad(config: dict, case: str) -> str:
    if case == "n_models":
        config["n_models"] = -4
    elif case == "methods.no_such_method":
        config["methods"]["no_such_method"] = None
    elif case == "forget_sets.0.size":
        config["forget_sets"][0]["size"] = 100_000
    elif case == "klom.direction":
        config["klom"]["direction"] = "sideways"
    elif case == "dataset":
        config["dataset"] = "mnist"
    elif case == "klom.percentiles":
        config["klom"]["percentiles"] = [99]
    elif case == "plugins.ghost":  # the module does not exist: every unlearning job would fail after training
        config["plugins"] = {"ghost": "no_such_module_xyz:build"}
        config["methods"]["ghost"] = {"lr": [0.1], "epochs": [1]}
    elif case == "n_models (10**7 models, one per job)":
        config.update(n_models=10**7, models_per_job=1)
    return case.split(" ")[0]


@pytest.mark.parametrize("case", ["n_models", "methods.no_such_method", "forget_sets.0.size", "klom.direction",
                                  "dataset", "klom.percentiles", "plugins.ghost",
                                  "n_models (10**7 models, one per job)"])
def test_a_bad_config_is_refused_before_any_job(workflow_copy, case):
    config = tiny_config(workflow_copy)
    key = _bad(config, case)
    name = write_config(workflow_copy, config, "bad.yaml")
    start = time.monotonic()
    proc = snakemake(workflow_copy, "--configfile", name, check=False, timeout=120)
    elapsed = time.monotonic() - start
    text = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert elapsed < 20, f"refused only after {elapsed:.1f} s"
    assert f"config key {key}" in text, text
    assert "Invalid config" in text and "Traceback" not in text
    assert not (workflow_copy / "results").exists() and not (workflow_copy / "logs").exists()
    assert "Job stats" not in text


@pytest.mark.parametrize("override, key", [("n_models=1e3", "n_models"), ("resources={gpu: 1.5}", "resources.gpu")])
def test_a_bad_config_override_is_refused_before_any_job(workflow_copy, override, key):
    proc = snakemake(workflow_copy, "--configfile", TINY_CONFIG, "--config", override, check=False, timeout=120)
    text = proc.stdout + proc.stderr
    assert proc.returncode != 0 and f"Invalid config: config key {key}" in text and "Traceback" not in text, text
    assert not (workflow_copy / "results").exists()


def test_nested_config_overrides_arrive_typed(workflow_copy):
    """Snakemake hands `resources={gpu: 0, threads: 2}` over as strings; they are read as the schema's integers
    (before, validation refused them: "'0' is not of type 'integer'")."""
    proc = snakemake(workflow_copy, "-n", "--configfile", TINY_CONFIG, "--config", "resources={gpu: 0, threads: 2}",
                     "klom={clip: [-50, 50]}", check=False, timeout=120)
    assert proc.returncode == 0 and "Invalid config" not in proc.stdout + proc.stderr, proc.stderr[-2000:]
    assert planned_jobs(proc)["unlearn"] > 0


# a diverging method --------------------------------------------------------------------------------------


def test_a_diverging_method_is_recorded_and_the_sweep_finishes(workflow_copy):
    config = tiny_config(workflow_copy)
    config.update(n_models=4, n_holdout_oracles=0, models_per_job=4,
                  forget_sets=[{"id": 1, "kind": "random", "size": 10}],
                  methods={"gradient_ascent": {"lr": [1.0e8], "batch_size": 16, "epochs": [1, 2]}})
    config["train"].update(epochs=4, peak_epoch=1)
    name = write_config(workflow_copy, config, "diverging.yaml")
    proc = snakemake(workflow_copy, "--configfile", name)
    assert proc.returncode == 0
    table = pd.read_csv(workflow_copy / layout.KLOM_SUMMARY)
    # 2 snapshots on the selection sample and the chosen one on the report sample, x 3 groups
    assert (table.method == "gradient_ascent").all() and len(table) == 3 * 3
    last = table[table.epoch == 2]
    assert (last.diverged > 0).all()  # by the second epoch at the latest
    saturation = np.log(1 / config.get("klom", {}).get("eps", 1e-5))
    gone = table[table.diverged > 0]  # a diverged model's margins are NaN: every point saturates
    assert np.allclose(gone.p95, saturation) and np.allclose(gone["mean"], saturation)
    run = table.run.iloc[0]
    scores = storage.load_arrays(
        workflow_copy / DIGITS.scores("klom.npz", "gradient_ascent", run, "1", "selection"))
    for epoch, klom in zip(scores["epochs"], scores["klom"]):
        if (table[(table.epoch == epoch) & (table["sample"] == "selection")].diverged > 0).any():
            assert np.allclose(klom, saturation)
    log = (workflow_copy / DIGITS.log("unlearn", DIGITS.unlearned()).format(method="gradient_ascent", run=run, forget_set=1, sample="selection", shard=1)).read_text()
    assert "diverged" in log
    # the report copes: a diverged run is marked, the headline table says so
    headline = (workflow_copy / layout.SUMMARY_MD).read_text()
    assert re.search(r"\| `gradient_ascent` \| `[^`]+` \| \d+ \| 11\.513", headline)
    assert (workflow_copy / layout.figure("margins", "1")).stat().st_size > 0


# no pickles ----------------------------------------------------------------------------------------------


def _calls(text: str, name: str) -> list[str]:
    """The full text of every call ``name(...)`` in ``text`` (balanced parentheses)."""
    found = []
    for match in re.finditer(re.escape(name) + r"\(", text):
        depth, i = 0, match.end() - 1
        for i in range(match.end() - 1, len(text)):
            depth += {"(": 1, ")": -1}.get(text[i], 0)
            if depth == 0:
                break
        found.append(text[match.start(): i + 1])
    return found


# The one module that may import pickle: CIFAR-10's batches are pickles, parsed by a restricted unpickler that
# resolves only numpy's array-rebuilding globals (tests/test_data.py feeds it booby-trapped batches).
RESTRICTED_UNPICKLER = "src/unlearnbench/data/cifar10.py"


def test_the_code_never_unpickles_artefacts():
    offenders = []
    sources = sorted((REPO / "src/unlearnbench").rglob("*.py")) + sorted((REPO / "workflow/scripts").glob("*.py"))
    for path in sources:
        text = path.read_text()
        if str(path.relative_to(REPO)) == RESTRICTED_UNPICKLER:
            assert "def find_class" in text and "pickle.Unpickler)" in text  # the restriction is still there
            text = re.sub(r"^import pickle  #.*$", "", text, flags=re.M)
        for pattern in (r"^\s*(import|from)\s+(c?pickle|dill|joblib)\b", r"\bpickle\.loads?\(",
                        r"allow_pickle\s*=\s*True", r"read_pickle\(", r"weights_only\s*=\s*False"):
            for match in re.finditer(pattern, text, re.M):
                offenders.append(f"{path.relative_to(REPO)}: {match.group(0).strip()}")
        for call in _calls(text, "torch.load"):
            if not re.search(r"weights_only\s*=\s*True", call):
                offenders.append(f"{path.relative_to(REPO)}: {call}")
    assert not offenders, offenders


class _Payload:
    """Unpickling this creates a file: proof that a loader executed pickled code."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_pickled_artefacts_are_refused_without_running_them(tmp_path):
    marker = tmp_path / "unpickled"
    payload = np.array([_Payload(marker)], dtype=object)
    np.savez(tmp_path / "margins.npz", margins=payload)
    np.save(tmp_path / "forget_set.npy", payload)
    with open(tmp_path / "weights.safetensors", "wb") as fh:
        pickle.dump({"weight": _Payload(marker)}, fh)
    with pytest.raises(ArtefactError, match="margins.npz"):
        storage.load_arrays(tmp_path / "margins.npz")
    with pytest.raises(ArtefactError, match="forget_set.npy"):
        storage.load_npy(tmp_path / "forget_set.npy")
    with pytest.raises(ArtefactError, match="weights.safetensors"):
        storage.load_tensors(tmp_path / "weights.safetensors")
    assert not marker.exists()
