"""The job a launcher submits (one per array task): a ``ppds worker`` that requeues itself.

Imported only where submitit is installed (``pip install 'ppds[slurm]'``): the
launcher (:mod:`._launch`) pickles a :class:`WorkerJob` into the job folder and
submitit unpickles it on the node. On preemption or the job's time limit SLURM
signals the job; submitit calls :meth:`WorkerJob.checkpoint`, which resubmits
the same worker (``Checkpointable``), and the unit that was running is resumed
by whichever worker claims it once its lease expires (from the fit's checkpoint).
"""

from __future__ import annotations

from typing import Any

import submitit

__all__ = ["WorkerJob"]


class WorkerJob(submitit.helpers.Checkpointable):
    """``run_worker(out, …)`` as a picklable, requeueable job; called with its array index."""

    def __init__(self, out: str, prefix: str, units: str, lease_s: float):
        self.out, self.prefix, self.units, self.lease_s = out, prefix, units, lease_s

    def __call__(self, index: int) -> dict[str, Any]:
        from ._worker import run_worker

        result = run_worker(self.out, worker=f"{self.prefix}-{index}", lease_s=self.lease_s,
                            units=self.units, quiet=True, sigterm_stops=False)
        return {"worker": result.worker, "units": result.units, "waited_s": result.waited_s,
                "wrote_boards": result.wrote_boards}

    def checkpoint(self, index: int) -> submitit.helpers.DelayedSubmission:
        """Preempted or out of time: submit the same worker again (its unit resumes elsewhere)."""
        return submitit.helpers.DelayedSubmission(WorkerJob(self.out, self.prefix, self.units, self.lease_s),
                                                  index)
