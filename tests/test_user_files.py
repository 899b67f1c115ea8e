"""The user's own input files are tracked by content: a file replaced by an older one (cp -p) is picked up."""

from __future__ import annotations

import os
import shutil
import time

import numpy as np
import pytest
import torch
import yaml

from conftest import TINY_CONFIG, planned_jobs, snakemake
from unlearnbench import content_digests
from unlearnbench.content_digests import MISSING, DigestCache
from unlearnbench import layout

DIGITS = layout.Layout("digits")  # the paths of a run on the digits data set

DAY = 24 * 3600


def set_mtime(path, when):
    os.utime(path, (when, when))


def test_digests_are_cached_by_size_times_and_inode(tmp_path, monkeypatch):
    path = tmp_path / "big.npy"
    np.save(path, np.arange(5))
    hashed = []
    real = content_digests.sha256
    monkeypatch.setattr(content_digests, "sha256", lambda p: hashed.append(p) or real(p))
    cache_file = tmp_path / "cache.json"

    first = DigestCache(cache_file).digests([path])[0]
    assert first.startswith("sha256:") and len(hashed) == 1
    assert DigestCache(cache_file).digests([path]) == [first] and len(hashed) == 1  # a new parse: from the cache

    # cp -p of other content: same size, the old mtime back; only the inode change time moves
    mtime = path.stat().st_mtime
    other = tmp_path / "other.npy"
    np.save(other, np.arange(5) + 1)
    time.sleep(0.01)
    shutil.copyfile(other, path)
    set_mtime(path, mtime)
    second = DigestCache(cache_file).digests([path])[0]
    assert second != first and len(hashed) == 2
    assert DigestCache(cache_file).digest(tmp_path / "absent.npy") == MISSING


def test_an_unwritable_cache_only_costs_rehashing(tmp_path):
    path = tmp_path / "f.npy"
    np.save(path, np.arange(3))
    blocked = tmp_path / "file-not-folder"
    blocked.write_text("")
    assert DigestCache(blocked / "cache.json").digests([path])[0].startswith("sha256:")


def write_config(workdir, config):
    (workdir / "user.yaml").write_text(yaml.safe_dump(config))
    return "user.yaml"


def replace_with_older(path, write):
    """Write new content to ``path`` and set its mtime two days back, as cp -p / rsync -a / tar x would."""
    write(path)
    set_mtime(path, time.time() - 2 * DAY)


@pytest.mark.workflow
def test_a_replaced_forget_set_file_with_an_older_mtime_reruns_its_job(workflow_copy):
    user = workflow_copy / "user"
    user.mkdir()
    np.save(user / "f.npy", np.array([1, 2, 3]))
    config = yaml.safe_load((workflow_copy / TINY_CONFIG).read_text())
    config["forget_sets"].append({"id": "f", "kind": "file", "path": "user/f.npy"})
    name = write_config(workflow_copy, config)
    target = DIGITS.forget_set("f")
    snakemake(workflow_copy, target, "--configfile", name)
    assert planned_jobs(snakemake(workflow_copy, "-n", target, "--configfile", name)) == {}

    os.chmod(user / "f.npy", 0o600)  # metadata only: same content, nothing to do
    assert planned_jobs(snakemake(workflow_copy, "-n", target, "--configfile", name)) == {}

    replace_with_older(user / "f.npy", lambda p: np.save(p, np.array([4, 5, 6])))
    proc = snakemake(workflow_copy, target, "--configfile", name)
    assert planned_jobs(proc) == {"make_forget_set": 1}
    assert np.load(workflow_copy / target).tolist() == [4, 5, 6]


@pytest.mark.workflow
def test_replaced_imported_margins_with_an_older_mtime_rerun_the_import(workflow_copy):
    config = yaml.safe_load((workflow_copy / TINY_CONFIG).read_text())
    rows = config["n_models"] + config["n_holdout_oracles"]
    published = workflow_copy / "published"
    published.mkdir()
    torch.save(torch.randn(rows, 300), published / "train.pt")
    torch.save(torch.randn(rows, 1497), published / "val.pt")
    config["import"] = {"oracle_margins": {1: {"train": "published/train.pt", "val": "published/val.pt"}}}
    name = write_config(workflow_copy, config)
    target = DIGITS.margins(layout.oracle_family("1"), 0)
    snakemake(workflow_copy, target, "--configfile", name)
    assert planned_jobs(snakemake(workflow_copy, "-n", target, "--configfile", name)) == {}

    replace_with_older(published / "train.pt", lambda p: torch.save(torch.randn(rows, 300), p))
    jobs = planned_jobs(snakemake(workflow_copy, "-n", target, "--configfile", name))
    assert jobs == {"import_oracle_margins": 1}


def test_an_unusable_imported_file_is_reported_as_the_users_input(tmp_path):
    from unlearnbench.published import PublishedFormatError
    from unlearnbench.stages.imports import import_oracle_margins

    torch.save(torch.zeros(3, 7), tmp_path / "train.pt")
    torch.save(torch.zeros(3, 5), tmp_path / "val.pt")
    with pytest.raises(PublishedFormatError) as err:
        import_oracle_margins(str(tmp_path / "train.pt"), str(tmp_path / "val.pt"), str(tmp_path / "out.npz"), (0, 2),
                              n_train=300, n_val=5)
    message = str(err.value)
    assert "7 points per model, expected 300" in message and "published asset you supplied" in message
    assert "Delete it" not in message and not (tmp_path / "out.npz").exists()
