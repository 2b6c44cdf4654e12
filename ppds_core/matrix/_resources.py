"""A generator's cluster resources: the matrix's ``resources:`` block of a generator entry.

Only the SLURM launcher (:mod:`._launch`) reads it: units of a generator asking
for GPUs (its cell fits and the shadow fits attacks train with it) go to GPU
workers, everything else (evaluations, CPU generators) to CPU workers. It is not
part of any cache key: moving a fit to a GPU does not change what it computes.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["Resources"]


class Resources(BaseModel):
    """``resources: {gpus: 1, cpus: 8, mem_gb: 64, time_min: 720}`` of one generator's fits."""

    model_config = ConfigDict(extra="forbid", strict=True)

    gpus: int = Field(0, ge=0, le=64, description="GPUs per fit (0: a CPU worker runs it)")
    cpus: int = Field(1, ge=1, le=1024, description="CPU cores per worker")
    mem_gb: float = Field(8.0, gt=0, description="memory per worker, GiB")
    time_min: float = Field(720.0, gt=0, description="the worker job's time limit, minutes")
