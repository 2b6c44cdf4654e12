"""Start workers on a run folder: ``ppds run CONFIG --out DIR --worker`` and ``--launcher``.

``--worker``: this process writes ``provenance.json`` (the matrix; refused while
workers of another matrix run on the folder) and works on the folder itself (:func:`._worker.run_worker`).

``--launcher slurm|local --workers N``: submit N workers as one job array with
submitit (``pip install 'ppds[slurm]'``; ``local`` runs the same job objects as
local processes, which is how CI tests the launcher). When some generator's
``resources`` asks for GPUs, two arrays go out: N GPU workers (``--units gpu``:
those generators' fits and shadow fits, with the largest gpus / cpus / mem_gb /
time_min asked) and ``--cpu-workers`` CPU workers for everything else. Each job
requeues itself on preemption or timeout (:mod:`._submitit_job`).
"""

from __future__ import annotations

import json
import os
import socket
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ._claims import clear_failed
from ._lock import RunLock, holders
from ._worker import worker_id

__all__ = ["prepare_folder", "work_on", "launch", "Launched", "worker_groups"]


def prepare_folder(config: str | Path | dict[str, Any], out: str | Path, smoke: bool = False,
                   retry_failed: bool = False):
    """Validate the matrix and write it into ``out/provenance.json`` for workers to read.

    A folder whose workers run another matrix is refused (each worker keeps the matrix it
    read at its start); ``retry_failed`` forgets the failures workers recorded (only while none runs).
    """
    from ._data import check_datasets_available
    from ._provenance import PROVENANCE_FILE, resolved_matrix, write_provenance
    from ._yaml import read_config_text
    from .config import load_matrix

    os.environ.setdefault("PYTORCH_NVML_BASED_CUDA_CHECK", "1")  # this process may fork units next
    matrix = load_matrix(config, smoke=smoke)
    check_datasets_available(matrix)
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(f"--out {out}: cannot create the output folder ({err.strerror})") from None
    try:
        old = json.loads((out / PROVENANCE_FILE).read_text()).get("matrix_resolved")
    except (OSError, ValueError, AttributeError):
        old = None
    if old is not None and old != json.loads(json.dumps(resolved_matrix(matrix), default=str)) \
            and holders(out):
        raise ConfigError(f"{out}: workers of another matrix are running on this folder ({holders(out)[0]}); "
                          "pass the config they were started with, wait for them, or pass another --out")
    if retry_failed:
        with RunLock(out).acquire():  # refused, naming them, while workers run
            clear_failed(out)
    with RunLock(out, worker=worker_id(f"submit-{socket.gethostname()}-{os.getpid()}")).acquire():  # not under a sequential run
        given = config if isinstance(config, dict) else read_config_text(Path(config))
        write_provenance(out, matrix, given)
    return matrix


def work_on(config, out, *, smoke: bool = False, retry_failed: bool = False, **worker: Any):
    """``ppds run CONFIG --out DIR --worker``: write the folder's matrix, then be a worker on it."""
    from ._worker import run_worker

    prepare_folder(config, out, smoke, retry_failed)
    return run_worker(out, **worker)


@dataclass
class Group:
    """One job array: its workers' unit filter and resources."""

    units: str
    workers: int
    gpus: int = 0
    cpus: int = 1
    mem_gb: float = 8.0
    time_min: float = 720.0


def worker_groups(matrix, workers: int, cpu_workers: int | None = None, gpus_per_worker: int | None = None,
                  cpus_per_worker: int | None = None, mem_gb: float | None = None,
                  time_min: float | None = None) -> list[Group]:
    """The arrays to submit: one of ``--units all`` workers, or GPU + CPU arrays when some
    generator's ``resources`` asks for GPUs (command-line values override the matrix's)."""
    asked = [g.plugin.resources for g in matrix.generators if g.plugin.resources is not None]
    gpu = [r for r in asked if r.gpus > 0]
    cpus, mem, time_ = cpus_per_worker or 1, mem_gb or 8.0, time_min or 720.0
    if not gpu:
        big = max(asked, key=lambda r: r.mem_gb, default=None)
        return [Group("all", workers, gpus_per_worker or 0, cpus_per_worker or (big.cpus if big else 1),
                      mem_gb or (big.mem_gb if big else 8.0),
                      time_min or max((r.time_min for r in asked), default=720.0))]
    return [Group("gpu", workers, gpus_per_worker or max(r.gpus for r in gpu),
                  cpus_per_worker or max(r.cpus for r in gpu), mem_gb or max(r.mem_gb for r in gpu),
                  time_min or max(r.time_min for r in gpu)),
            Group("cpu", cpu_workers or workers, 0, cpus, mem, time_)]


@dataclass
class Launched:
    """What a launch submitted: per array its unit filter and job ids; results when waited for."""

    folder: Path
    arrays: list[dict[str, Any]] = field(default_factory=list)
    results: list[Any] = field(default_factory=list)
    #: the submitit jobs (to wait for, cancel, or, in tests, preempt)
    jobs: list[Any] = field(default_factory=list, repr=False)


def _submitit():
    try:
        import submitit
    except ImportError:
        raise ConfigError("--launcher needs submitit, which is not installed: pip install 'ppds[slurm]'") \
            from None
    return submitit


def launch(config, out, *, launcher: str, workers: int, smoke: bool = False, cpu_workers: int | None = None,
           partition: str | None = None, cpu_partition: str | None = None, time_min: float | None = None,
           gpus_per_worker: int | None = None,
           cpus_per_worker: int | None = None, mem_gb: float | None = None, lease_s: float = 60.0,
           wait: bool | None = None, retry_failed: bool = False) -> Launched:
    """Submit the workers of ``out`` as job arrays (``launcher``: ``slurm`` or ``local``).

    ``wait`` (default: only for ``local``) waits for every job and collects its result.
    """
    if launcher not in ("slurm", "local"):
        raise ConfigError(f"--launcher {launcher!r}: expected slurm or local")
    if workers < 1 or (cpu_workers is not None and cpu_workers < 1):
        raise ConfigError("--workers: at least 1 worker")
    submitit = _submitit()
    from ._submitit_job import WorkerJob

    matrix = prepare_folder(config, out, smoke, retry_failed)
    out = Path(out).resolve()
    token = uuid.uuid4().hex[:6]
    done = Launched(out)
    for group in worker_groups(matrix, workers, cpu_workers, gpus_per_worker, cpus_per_worker, mem_gb,
                               time_min):
        try:
            executor = submitit.AutoExecutor(folder=out / "submitit" / "%j", cluster=launcher)
        except RuntimeError as err:  # submitit finds no srun / sbatch here
            raise ConfigError(f"--launcher {launcher}: {err} (submit from a login node of the cluster, "
                              "or use --launcher local)") from None
        params: dict[str, Any] = {"name": f"ppds-{group.units}", "timeout_min": int(group.time_min),
                                  "cpus_per_task": group.cpus, "mem_gb": group.mem_gb, "tasks_per_node": 1,
                                  "nodes": 1, "slurm_array_parallelism": group.workers}
        if group.gpus:
            params["gpus_per_node"] = group.gpus
        where = cpu_partition if group.units == "cpu" and cpu_partition else partition
        if where:
            params["slurm_partition"] = where
        executor.update_parameters(**params)
        array = executor.map_array(WorkerJob(str(out), f"{group.units}{token}", group.units, lease_s),
                                   list(range(group.workers)))
        done.jobs += array
        done.arrays.append({"units": group.units, "workers": group.workers, "gpus": group.gpus,
                            "job_ids": [j.job_id for j in array]})
    if wait if wait is not None else launcher == "local":
        done.results = [j.result() for j in done.jobs]
    return done
