"""unlearnbench.rescheduling: Snakemake's scheduler keeps one pending wake-up instead of one per round."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

import pytest
from snakemake.scheduling.job_scheduler import JobScheduler

from unlearnbench import rescheduling

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from scheduler_rounds import run_once  # noqa: E402


class FakeScheduler:
    def __init__(self):
        self._open_jobs = threading.Semaphore(0)


def releases(scheduler: FakeScheduler) -> int:
    n = 0
    while scheduler._open_jobs.acquire(blocking=False):
        n += 1
    return n


@pytest.fixture
def restore_scheduler(monkeypatch):
    # install() edits the class for the whole process: undo it after the test
    monkeypatch.setattr(JobScheduler, "_schedule_reevalutation", JobScheduler._schedule_reevalutation)


def test_the_installed_snakemake_has_the_timer_method_and_install_replaces_it(restore_scheduler):
    assert rescheduling.install() is True
    assert JobScheduler._schedule_reevalutation is rescheduling.schedule_one_wakeup
    assert rescheduling.install() is True  # a second install changes nothing
    assert JobScheduler._schedule_reevalutation is rescheduling.schedule_one_wakeup


def test_many_rounds_leave_one_pending_wakeup_that_rearms_after_it_fired():
    scheduler = FakeScheduler()
    before = set(threading.enumerate())
    for _ in range(50):  # 50 rounds within one timespan
        rescheduling.schedule_one_wakeup(scheduler, 0.05)
    timers = [t for t in threading.enumerate() if t not in before and isinstance(t, threading.Timer)]
    assert len(timers) == 1 and timers[0].daemon  # one timer; Snakemake's exit does not wait for it
    time.sleep(0.5)
    assert releases(scheduler) == 1  # Snakemake's own method: 50, one per round
    rescheduling.schedule_one_wakeup(scheduler, 0.05)  # the round that wake-up triggered arms the next
    time.sleep(0.5)
    assert releases(scheduler) == 1


def test_a_run_with_the_workaround_has_rounds_for_its_jobs_not_one_per_job_per_second():
    # 24 jobs of 0.5 s on 2 cores (about 7 s): a round per finished job and one a second besides (measured:
    # 29); Snakemake's own timers add a chain of rounds per finished job (measured: 79, twice)
    out = run_once(one_timer=True, jobs=24, seconds=0.5, cores=2)
    assert out["rounds"] <= 2 * 24
