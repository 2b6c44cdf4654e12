"""The submitit launcher (issue 17), tested with submitit's local executor: the same job objects
as on SLURM, run as local processes. A job array of workers completes the folder, GPU units go to
the GPU array and the rest to the CPU array, `ppds status` reports it; without submitit one line."""

from __future__ import annotations

import copy
import json
import os
import pickle
import signal
import sys
import time
from collections import Counter

import pytest
import yaml
from matrix_fakes import install

from ppds_core.cli import main
from ppds_core.matrix import read_results

pytest.importorskip("submitit")

ROUTED = {
    "name": "launched", "seeds": [0], "delta": 1e-5, "samples": 40,
    "datasets": [{"name": "tiny-set"}],
    "generators": [{"name": "fake-gen", "epsilons": [1, "inf"], "config": {"steps": 2},
                    "resources": {"gpus": 1, "cpus": 2, "mem_gb": 4, "time_min": 10}}],
    "metrics": [{"name": "fake-gap"}],
    "attacks": [{"name": "fake-mia"}],
}


@pytest.fixture
def fakes(monkeypatch, tmp_path):
    site = install(monkeypatch, tmp_path)
    # the local executor's jobs are fresh interpreters: they find the fakes through PYTHONPATH
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(site), *filter(None, [os.environ.get("PYTHONPATH")])]))
    return site


@pytest.mark.slow
def test_a_local_job_array_of_workers_completes_the_folder_and_status_reports_it(fakes, tmp_path, capsys):
    path, out = tmp_path / "m.yaml", tmp_path / "out"
    path.write_text(yaml.safe_dump(ROUTED))
    code = main(["run", str(path), "--out", str(out), "--launcher", "local", "--workers", "1",
                 "--cpu-workers", "2", "--lease-s", "10"])
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "submitted 1 gpu workers (1 GPUs each)" in printed and "submitted 2 cpu workers (0 GPUs each)" in printed
    records = {p.stem: [json.loads(x) for x in p.read_text().splitlines()]
               for p in (out / "workers").glob("*.jsonl")}
    units = {w: [e for e in ev if e["event"] == "unit"] for w, ev in records.items()}
    assert len(records) == 3 and all(ev[-1]["event"] == "exit" for ev in records.values())
    by_group = {g: Counter(u["kind"] for w, us in units.items() if w.startswith(g) for u in us)
                for g in ("gpu", "cpu")}
    # the generator asks for a GPU: its fits and shadow fits go to the GPU array, the rest to CPU workers
    assert by_group["gpu"] == {"fit": 2, "shadow": 2}
    assert by_group["cpu"] == {"eval": 6}  # 3 cells (2 ε + real data) × 2 evaluators
    rows = read_results(out)
    assert len({(r["cell"], r["name"]) for r in rows}) == len(rows) and rows
    assert {r["status"] for r in rows} <= {"ok", "skipped"} and (out / "leaderboard.md").exists()
    assert main(["status", str(out), "--json"]) == 0
    st = json.loads(capsys.readouterr().out)
    assert st["done"] == 3 and st["units"]["pending"] == st["units"]["failed"] == 0
    assert st["units"]["done"] == 10


def test_the_job_requeues_itself_when_preempted(tmp_path):
    from ppds_core.matrix._submitit_job import WorkerJob

    job = WorkerJob(str(tmp_path), "gpuabc", "gpu", 30.0)
    again = job.checkpoint(3)
    assert again.function is not job and isinstance(again.function, WorkerJob)
    assert again.args == (3,) and vars(again.function) == vars(job)
    assert vars(pickle.loads(pickle.dumps(job))) == vars(job)  # what submitit writes to the job folder


def test_without_submitit_the_launcher_is_one_line_naming_the_extra(fakes, tmp_path, monkeypatch, capsys):
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump(copy.deepcopy(ROUTED)))
    monkeypatch.setitem(sys.modules, "submitit", None)  # import submitit → ImportError
    assert main(["run", str(path), "--out", str(tmp_path / "o"), "--launcher", "slurm", "--workers", "4"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "pip install 'ppds[slurm]'" in err


def test_resources_are_validated_strictly(fakes, tmp_path, capsys):
    bad = copy.deepcopy(ROUTED)
    bad["generators"][0]["resources"] = {"gpu": 1}
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump(bad))
    assert main(["run", str(path), "--check"]) == 2
    err = capsys.readouterr().err
    assert "generators[0].resources.gpu" in err and "did you mean 'gpus'" in err


@pytest.mark.slow
def test_a_preempted_local_job_requeues_itself_and_its_fit_resumes(fakes, tmp_path):
    from matrix_fakes import counts

    from ppds_core.matrix._launch import launch

    matrix = {"name": "preempt", "seeds": [0], "samples": 30, "real_data": False, "checkpoint_every": 1,
              "datasets": [{"name": "tiny-set"}],
              "generators": [{"name": "fake-ckpt-gen", "epsilons": [10], "config": {"steps": 10, "step_s": 0.5}}],
              "metrics": [{"name": "fake-gap"}]}
    out = tmp_path / "out"
    done = launch(matrix, out, launcher="local", workers=1, lease_s=30, wait=False)
    [job] = done.jobs

    def steps():
        return [e for e in counts(tmp_path) if e.startswith("ckpt-step")]

    deadline = time.time() + 120
    while len(steps()) < 3 and time.time() < deadline:
        assert not job.done(), job.stderr()
        time.sleep(0.05)
    [start] = [json.loads(x) for p in (out / "workers").glob("*.jsonl") for x in p.read_text().splitlines()]
    # what SLURM sends the job before preempting it (or at its time limit): submitit's handler
    # calls WorkerJob.checkpoint and requeues it; the local controller then starts it again
    os.kill(start["pid"], signal.SIGUSR2)
    job.result()
    starts = [e for e in counts(tmp_path) if e.startswith("ckpt-start")]
    assert len(starts) == 2 and starts[0].startswith("ckpt-start 0 ") and int(starts[1].split()[1]) >= 3
    events = [json.loads(x) for p in (out / "workers").glob("*.jsonl") for x in p.read_text().splitlines()]
    assert [e["event"] for e in events].count("start") == 2  # the same worker, started again
    # the preempted worker released its claim on the way out: the requeued one took it at once,
    # not after the 30 s lease
    assert [(e["kind"], e["status"]) for e in events if e["event"] == "unit"] == [("fit", "ok"), ("eval", "ok")]
    fit = next(e for e in events if e["event"] == "unit")
    assert fit["start"] - start["at"] < 30  # resumed well within the lease
    assert len(read_results(out)) == 1 and read_results(out)[0]["status"] == "ok"


def test_the_slurm_launcher_submits_one_array_per_kind_of_worker_with_their_resources(
        fakes, tmp_path, monkeypatch, capsys):
    # no SLURM here: stand-ins for srun and sbatch; sbatch keeps the script it was given
    bin_dir, scripts = tmp_path / "bin", tmp_path / "scripts"
    bin_dir.mkdir(), scripts.mkdir()
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 0\n")
    (bin_dir / "sbatch").write_text(f'#!/bin/sh\nn=$(ls {scripts} | wc -l)\ncp "$1" {scripts}/$n.sh\n'
                                    'echo "Submitted batch job 77$n"\n')
    for f in bin_dir.iterdir():
        f.chmod(0o755)
    path, out = tmp_path / "m.yaml", tmp_path / "out"
    path.write_text(yaml.safe_dump(ROUTED))
    monkeypatch.setenv("PATH", "/nonexistent")
    assert main(["run", str(path), "--out", str(out), "--launcher", "slurm", "--workers", "3"]) == 2
    assert "srun" in capsys.readouterr().err  # one line: no SLURM here
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}/usr/bin{os.pathsep}/bin")
    assert main(["run", str(path), "--out", str(out), "--launcher", "slurm", "--workers", "3",
                 "--cpu-workers", "2", "--partition", "gpu-long", "--cpu-partition", "cpu"]) == 0
    printed = capsys.readouterr().out
    assert "jobs 770_0, 770_1, 770_2" in printed and "jobs 771_0, 771_1" in printed
    gpu, cpu = (scripts / "0.sh").read_text(), (scripts / "1.sh").read_text()
    for line in ("--array=0-2%3", "--gpus-per-node=1", "--cpus-per-task=2", "--mem=4GB", "--time=10",
                 "--partition=gpu-long", "--job-name=ppds-gpu", "--signal=USR2@"):
        assert f"#SBATCH {line}" in gpu, line
    assert "#SBATCH --array=0-1%2" in cpu and "#SBATCH --job-name=ppds-cpu" in cpu
    assert "--gpus-per-node" not in cpu and "#SBATCH --cpus-per-task=1" in cpu
    assert "#SBATCH --partition=cpu" in cpu and "#SBATCH --mem=8GB" in cpu
    assert (out / "provenance.json").exists() and not (out / "results.jsonl").exists()  # nothing ran here
