"""The profiles as typed in the repository root, how a site's own profile composes with the workflow
profile, and GPUs declared from `--resources gpu=N` (dry runs of the tiny config)."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest
import yaml

from conftest import REPO, TINY_CONFIG, copy_workflow, snakemake
from unlearnbench import layout

DIGITS = layout.Layout("digits")  # the paths of a run on the digits data set

pytestmark = pytest.mark.workflow

GPU_RULES = {"train_base", "train_oracle", "compute_margins", "unlearn"}
NO_GPU = {"CUDA_VISIBLE_DEVICES": ""}  # this host shows no GPU, whatever it has


@pytest.fixture
def clone(tmp_path) -> Path:
    """What a fresh clone holds at its root, the profile links included (as links)."""
    (tmp_path / "clone").mkdir()
    workdir = copy_workflow(tmp_path / "clone")
    for name in ("slurm", "local"):
        assert (REPO / name).is_symlink(), f"./{name} should link to profiles/{name}"
        os.symlink(os.readlink(REPO / name), workdir / name)
    shutil.copytree(REPO / "src", workdir / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    return workdir


def job_resources(output: str) -> list[tuple[str, dict[str, str]]]:
    """(rule, resources) of every job block a dry run prints."""
    jobs, rule = [], None
    for line in output.splitlines():
        if match := re.match(r"\s*(?:local)?rule (\w+):", line):
            rule = match.group(1)
        elif rule and (match := re.match(r"\s*resources: (.*)", line)):
            jobs.append((rule, dict(item.split("=", 1) for item in match.group(1).split(", "))))
            rule = None
    return jobs


def resources_by_rule(proc) -> list[tuple[str, dict[str, str]]]:
    """(rule, resources) of the jobs a dry run would submit: local rules (run where snakemake runs; a dry run
    prints them as "rule" too) left out."""
    local = {rule for rule, body in rule_bodies().items() if "localrule: True" in body} | {"all"}
    jobs = [(rule, resources) for rule, resources in job_resources(proc.stdout + proc.stderr) if rule not in local]
    assert jobs, proc.stdout[-3000:]
    return jobs


def per_rule_needs() -> dict[str, dict]:
    return yaml.safe_load((REPO / "profiles/default/config.yaml").read_text())["set-resources"]


def test_profile_slurm_works_typed_in_the_repository_root(clone):
    proc = snakemake(clone, "--profile", "slurm", "-n", "--configfile", TINY_CONFIG, env=NO_GPU)
    assert "Using profiles slurm and workflow specific profile profiles/default" in proc.stderr
    needs = per_rule_needs()
    for rule, resources in resources_by_rule(proc):
        # the workflow profile's needs, and a GPU for the GPU rules: the profile's budget says there are
        # GPUs although this (submit) host shows none
        assert int(resources["runtime"]) == needs[rule]["runtime"], rule
        assert int(resources["mem_mb"]) == needs[rule]["mem_mb"], rule
        assert int(resources.get("gpu", 0)) == (rule in GPU_RULES), rule


def test_profile_local_works_typed_in_the_repository_root(clone):
    proc = snakemake(clone, "--profile", "local", "-n", "--configfile", TINY_CONFIG, env=NO_GPU)
    assert "Using profiles local and workflow specific profile profiles/default" in proc.stderr
    jobs = resources_by_rule(proc)
    assert GPU_RULES <= {rule for rule, _ in jobs} and all(int(r.get("gpu", 0)) == 0 for _, r in jobs)


def test_a_site_profile_composes_with_the_workflow_profile(clone, tmp_path):
    """A user's own profile in ~/.config/snakemake (partition, account, defaults) keeps the workflow's
    per-rule needs, alone or after ours."""
    config_home = tmp_path / "xdg"
    site = config_home / "snakemake" / "mysite"
    site.mkdir(parents=True)
    (site / "config.yaml").write_text(yaml.safe_dump({
        "default-resources": {"slurm_partition": "gpu-queue", "slurm_account": "proj42", "runtime": 5,
                              "mem_mb": 999},
    }))
    env = {**NO_GPU, "XDG_CONFIG_HOME": str(config_home), "HOME": str(tmp_path)}
    needs = per_rule_needs()
    for profiles in (["--profile", "mysite"], ["--profile", "slurm", "--profile", "mysite"]):
        proc = snakemake(clone, *profiles, "-n", "--configfile", TINY_CONFIG, env=env)
        assert f"{site.name}" in proc.stderr
        for rule, resources in resources_by_rule(proc):
            assert resources["slurm_partition"] == "gpu-queue" and resources["slurm_account"] == "proj42", rule
            assert int(resources["runtime"]) == needs[rule]["runtime"], rule
            assert int(resources["mem_mb"]) == needs[rule]["mem_mb"], rule
            assert int(resources.get("gpu", 0)) == (rule in GPU_RULES and "slurm" in profiles), rule


def rule_bodies() -> dict[str, str]:
    """Each rule's (and checkpoint's) text in workflow/rules/, by name."""
    bodies = {}
    for path in (REPO / "workflow" / "rules").glob("*.smk"):
        blocks = re.split(r"^\s*(?:rule|checkpoint) (\w+):", path.read_text(), flags=re.M)[1:]
        bodies.update(zip(blocks[::2], blocks[1::2]))
    return bodies


def test_every_rule_has_its_needs_in_the_workflow_profile():
    rules = {rule for rule, body in rule_bodies().items() if "localrule: True" not in body}
    needs = per_rule_needs()
    assert set(needs) == rules
    assert all(set(entry) == {"runtime", "mem_mb"} for entry in needs.values())


def test_a_gpu_budget_makes_the_gpu_rules_declare_a_gpu(clone):
    """`snakemake --cores 8 --resources gpu=4` on a GPU workstation: the default `gpu: auto` needs no
    other switch (here the host shows no GPU, so without the budget the jobs are CPU jobs)."""
    with_budget = resources_by_rule(snakemake(clone, "-n", "--resources", "gpu=4", "--configfile", TINY_CONFIG,
                                              env=NO_GPU))
    without = resources_by_rule(snakemake(clone, "-n", "--configfile", TINY_CONFIG, env=NO_GPU))
    assert {rule for rule, r in with_budget if int(r.get("gpu", 0)) == 1} == GPU_RULES
    assert all(int(r.get("gpu", 0)) == 0 for _, r in without)


def test_a_gpu_job_without_a_gpu_stops_with_a_clear_message(clone):
    proc = snakemake(clone, DIGITS.weights("base", 0), "--resources", "gpu=1",
                     "--configfile", TINY_CONFIG, env=NO_GPU, check=False)
    assert proc.returncode != 0
    log = (clone / DIGITS.log("train_base", DIGITS.weights("base")).format(shard=0)).read_text()
    assert "declares a GPU (resources: gpu=1) but torch sees none" in log
    assert not (clone / DIGITS.weights("base", 0)).exists()


def test_the_readme_gives_the_literal_commands():
    readme = (REPO / "README.md").read_text()
    for command in ("snakemake --profile slurm", "snakemake --profile local", "snakemake --cores 8 --resources gpu=4"):
        assert command in readme


def test_no_job_downstream_of_a_checkpoint_runs_in_a_group(clone):
    """Snakemake can end a run with group jobs that read a checkpoint never started, and exits 0 under
    --keep-going (snakemake issue #823; a CI run of test_slurm.py ended so, without results/klom_summary.csv).
    The rules downstream of the select_run checkpoints run on the submit host, in no group job."""
    proc = snakemake(clone, "-n", "--rulegraph", "--configfile", TINY_CONFIG, env=NO_GPU)
    names = dict(re.findall(r'^\s*(\d+)\[label = "(\w+)"', proc.stdout, flags=re.M))
    edges = [(names[a], names[b]) for a, b in re.findall(r"^\s*(\d+) -> (\d+)", proc.stdout, flags=re.M)]
    bodies = rule_bodies()
    checkpoints = {name for path in (REPO / "workflow" / "rules").glob("*.smk")
                   for name in re.findall(r"^checkpoint (\w+):", path.read_text(), flags=re.M)}
    assert checkpoints == {"select_run"}
    downstream, frontier = set(), checkpoints
    while frontier:
        frontier = {b for a, b in edges if a in frontier} - downstream
        downstream |= frontier
    downstream.discard("all")  # the Snakefile's target rule, local by itself
    assert {"summarize", "plot_klom_epochs", "plot_margins", "report_tables"} <= downstream
    for rule in sorted(downstream):
        assert "group:" not in bodies[rule], f"rule {rule} reads a checkpoint's results and is in a group"
        assert "localrule: True" in bodies[rule], f"rule {rule} (report stage) should run on the submit host"


def test_no_group_is_packed_while_the_workflow_has_checkpoints():
    """While a select_run checkpoint finishes, snakemake 9.27 rebuilds the groups and re-bundles the components of
    every group with --group-components N > 1, merging into bundle objects that may be running (a GroupJob hashes
    by its jobs), and fails when such a bundle ends (KeyError: JobGroup(unlearn, ...) in _finish_jobs, seen in a
    full-suite run of test_slurm.py with unlearn=8). U-LiRA runs do not wait for the selection, so their bundles
    can run while it finishes just as well: no group is packed."""
    profile = yaml.safe_load((REPO / "profiles/slurm/config.yaml").read_text())
    checkpoints = [m.group(1) for path in (REPO / "workflow" / "rules").glob("*.smk")
                   for m in re.finditer(r"^checkpoint (\w+):", path.read_text(), flags=re.M)]
    assert checkpoints == ["select_run"]
    packed = {group: n for group, n in (entry.split("=") for entry in profile.get("group-components", []))
              if int(n) > 1}
    assert not packed, f"{packed}: bundles of several components break when a checkpoint ({checkpoints}) finishes"