"""One pending scheduler wake-up at a time: a workaround for Snakemake's multiplying rate-limiter timers.

After every scheduling round, Snakemake's ``JobScheduler.schedule`` (read in 9.27.1, the version this project
was measured with; ``pyproject.toml`` accepts any 9.x) starts a ``threading.Timer`` that wakes the scheduler
once the rate limiter's timespan has passed (``--max-jobs-per-timespan``, on by default at 100/1s), so that
jobs the limiter held back get another round. That wake-up is itself a round, so it starts the next timer:
every round that a finished job triggers begins a chain of rounds, one per timespan, that lasts until the run
ends. After k finished jobs the scheduler runs about k rounds a second, each one asking the size of every
input of every ready job and starting a thread. A profile of the default run (216 jobs, 330 s; ``python -m
cProfile -m snakemake --cores 2``) counted 19,968 rounds and as many timer threads;
``benchmarks/scheduler_rounds.py`` measures the difference on a small workflow.

:func:`install` replaces that method: a round starts a timer only when none is pending, so exactly one chain
of wake-ups runs, one round per timespan besides the rounds that finished jobs trigger, as before. A job the
limiter holds back is looked at again within two timespans (Snakemake's own rule: within one). The timer is a
daemon thread, so Snakemake's exit no longer waits up to a timespan for the last one (a pending wake-up has
nothing left to do once the scheduler returned). Every round is still Snakemake's own, and so is its choice
of jobs (results never depend on the order jobs run in).

Where the installed Snakemake has no such method (a later version that reworked it), :func:`install` leaves
the scheduler as it is and says so in its return value; ``tests/test_rescheduling.py`` checks that the
installed version still has it and that the workaround holds the number of rounds down.
"""

from __future__ import annotations

import threading

_PENDING = "_unlearnbench_wakeup_pending"  # attribute on the scheduler: a wake-up timer is pending
_MARK = "_unlearnbench_single_timer"  # set on the replacement, so installing twice changes nothing


def schedule_one_wakeup(scheduler, delay: float) -> None:
    """Release ``scheduler._open_jobs`` (one scheduling round) after ``delay`` seconds, unless a wake-up
    is already pending. The flag is cleared before the release, so the round the wake-up triggers starts
    the next one."""
    if getattr(scheduler, _PENDING, False):
        return
    setattr(scheduler, _PENDING, True)

    def wake():
        setattr(scheduler, _PENDING, False)
        scheduler._open_jobs.release()

    timer = threading.Timer(delay, wake)
    timer.daemon = True
    timer.start()


setattr(schedule_one_wakeup, _MARK, True)


def install() -> bool:
    """Make Snakemake's ``JobScheduler`` keep one pending wake-up (this process, every scheduler after).
    Returns whether the method was there to replace (False: this Snakemake version has no such timers)."""
    from snakemake.scheduling.job_scheduler import JobScheduler

    current = getattr(JobScheduler, "_schedule_reevalutation", None)  # sic: Snakemake's spelling
    if current is None:
        return False
    if not getattr(current, _MARK, False):
        JobScheduler._schedule_reevalutation = schedule_one_wakeup
    return True
