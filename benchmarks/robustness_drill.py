"""The robustness drill: bad inputs, faults and hostile plugins, tried through the real CLI.

Each case runs ``python -m ppds_core ...`` in a subprocess, as a user would,
and checks what issue 20 promises: the exit code, a one-line error with no
traceback for a user's mistake, and for faults a matrix that completes with
the misbehaving unit ``failed`` (with its reason), the others ``ok``, no
duplicate row, and a canary file beside the run folder untouched.

    python benchmarks/robustness_drill.py            # every case, a summary table
    python benchmarks/robustness_drill.py -k shard   # cases whose name contains "shard"

It prints one line per case and ``N cases, P passed``; exit 1 if any failed.
It takes a few minutes on 2 CPUs (most cases stop at validation). The unit
tests (tests/test_edge_*.py, tests/test_isolation.py, ...) check the same
behaviours in-process; this script is the end-to-end drill a reviewer reruns.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from matrix_fakes import SOURCE, first_party_entry_points  # noqa: E402

from ppds_core.testing.distributions import make_plugin_distribution  # noqa: E402

HOSTILE = '''
from ppds_core import Measurement, Metric, PluginConfig, hookimpl


class EscapeName(Metric):
    """A measurement named to climb out of the run folder."""
    name = "escape-name"
    higher_is_better = True

    def evaluate(self, ctx):
        return [Measurement("../../escaped", 1.0)]


class ColumnExtra(Metric):
    """Extras named like row columns: must be namespaced, never overwrite them."""
    name = "column-extra"
    higher_is_better = True

    def evaluate(self, ctx):
        return [Measurement("column-extra", 0.5, extra={"seconds": -1, "outcome": "x", "cell_id": "y",
                                                        "public": "z", "scores": "w"})]


@hookimpl
def register_plugins(register):
    for cls in (EscapeName, ColumnExtra):
        register(cls)
'''

NOT_PYDANTIC = '''
from ppds_core import Measurement, Metric, hookimpl


class NotPydantic(Metric):
    name = "not-pydantic"

    class Config:  # not a PluginConfig
        pass

    def evaluate(self, ctx):
        return [Measurement("not-pydantic", 1.0)]


@hookimpl
def register_plugins(register):
    register(NotPydantic)
'''

#: the misbehaviours of the fake metrics (tests/matrix_fakes.py, MISBEHAVIOURS)
MISBEHAVIOURS_NAMES = ("hang", "exit0", "exit5", "os-exit0", "abort", "interrupt", "segfault")
EXITS_AT_IMPORT = "import sys\nsys.exit(0)\n"


@dataclass
class Case:
    name: str
    run: Callable[[Path], str | None]  # returns None when the case holds, else what went wrong
    notes: list[str] = field(default_factory=list)


class Drill:
    def __init__(self, work: Path):
        self.work = work
        self.site = make_plugin_distribution(work / "site", "ppds-fake-matrix", {"ppds_fake_matrix": SOURCE},
                                             {"fake-matrix": "ppds_fake_matrix"}, version="0.1")
        make_plugin_distribution(work / "site", "ppds-hostile", {"ppds_hostile": HOSTILE},
                                 {"hostile": "ppds_hostile"}, version="0.1")
        make_plugin_distribution(work / "site", "ppds-not-pydantic", {"ppds_not_pydantic": NOT_PYDANTIC},
                                 {"not-pydantic": "ppds_not_pydantic"}, version="0.1")
        self.broken = work / "broken-site"
        make_plugin_distribution(self.broken, "ppds-exits", {"ppds_exits": EXITS_AT_IMPORT},
                                 {"exits": "ppds_exits"}, version="0.1")

    def env(self, *, fakes: bool = True, broken: bool = False) -> dict[str, str]:
        env = dict(os.environ)
        paths = ([str(self.site)] if fakes else []) + ([str(self.broken)] if broken else [])
        env["PYTHONPATH"] = os.pathsep.join(paths + [env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        if fakes:
            keep = {"datasets-embedded", "datasets-folders"}
            env["PPDS_DISABLE_PLUGINS"] = ",".join(
                n for n in first_party_entry_points().split(",") if n not in keep)
        env["PPDS_FAKE_COUNTS"] = str(self.work / "counts.txt")
        return env

    def ppds(self, argv, *, fakes=True, broken=False, timeout=600, cwd=None):
        return subprocess.run([sys.executable, "-m", "ppds_core", *argv], capture_output=True, text=True,
                              env=self.env(fakes=fakes, broken=broken), timeout=timeout, cwd=cwd or self.work)


def one_line_error(proc, code=2, contains: str = "") -> str | None:
    err = proc.stderr.strip()
    if proc.returncode != code:
        return f"exit {proc.returncode}, expected {code}: {err[-300:]}"
    if "Traceback" in err or "Traceback" in proc.stdout:
        return f"traceback: {err[-300:]}"
    lines = [ln for ln in err.splitlines() if ln.strip()]
    if len(lines) != 1:
        return f"{len(lines)} lines on stderr: {err[-300:]}"
    if contains and contains not in err:
        return f"message lacks {contains!r}: {err}"
    return None


def rows(folder: Path) -> list[dict]:
    path = folder / "results.jsonl"
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()] if path.exists() else []


def unique_rows(folder: Path) -> str | None:
    keys = [(r.get("cell"), r.get("name"), r.get("kind")) for r in rows(folder)]
    dup = len(keys) - len(set(keys))
    return f"{dup} duplicate rows" if dup else None


# ----------------------------------------------------------------------------- matrix files

TINY = {"name": "drill", "seeds": [0], "delta": 1e-5, "samples": 20,
        "datasets": [{"name": "tiny-set"}],
        "generators": [{"name": "fake-gen", "epsilons": ["inf"], "config": {"steps": 1}}],
        "metrics": [{"name": "fake-gap"}]}
DIGITS = "datasets: [{name: digits}]\ngenerators: [{name: dp-gan, epsilons: [1]}]\nmetrics: [{name: ssim}]\n"


def write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    (path.write_bytes if isinstance(text, bytes) else path.write_text)(text)
    return path


def config_case(name, text, contains="", *, fakes=False):
    def run(d: Drill, tmp: Path):
        cfg = write(tmp / "m.yaml", text)
        return one_line_error(d.ppds(["run", str(cfg), "--check"], fakes=fakes), 2, contains)
    return name, run


def argv_case(name, argv_of, code=2, contains="", *, fakes=False):
    def run(d: Drill, tmp: Path):
        return one_line_error(d.ppds(argv_of(tmp), fakes=fakes), code, contains)
    return name, run


def fit_argv(extra):
    return lambda tmp: ["fit", "dp-gan", "--dataset", "digits", "--epsilon", "inf", "--out",
                        str(tmp / "fit"), "--quiet", *extra]


def board_case(name, lines, contains):
    def run(d: Drill, tmp: Path):
        folder = tmp / "run"
        write(folder / "results.jsonl", "\n".join(lines) + "\n")
        return one_line_error(d.ppds(["leaderboard", str(folder)], fakes=False), 2, contains)
    return name, run


def billion_laughs() -> str:
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, 9):
        prev, cur = chr(ord("a") + i - 1), chr(ord("a") + i)
        lines.append(f"{cur}: &{cur} [" + ",".join([f"*{prev}"] * 9) + "]")
    return "\n".join(lines) + "\n"


def cifar(root: Path, data=None, labels=None) -> Path:
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {"data": rng.integers(0, 256, (10, 3072), dtype=np.uint8), "labels": list(range(10))}
        if name == "test_batch":
            batch |= {k: v for k, v in (("data", data), ("labels", labels)) if v is not None}
        write(root / name, pickle.dumps(batch))
    write(root / "batches.meta", pickle.dumps({"label_names": [f"c{i}" for i in range(10)]}))
    return root


def dataset_fit(tmp: Path, dataset: str, config: dict) -> list[str]:
    return ["fit", "dp-gan", "--dataset", dataset, "--dataset-config", json.dumps(config),
            "--epsilon", "inf", "--out", str(tmp / "fit"), "--quiet"]


def cifar_case(name, data, labels, contains):
    """``ppds fit`` refuses in one line; in a matrix the same message fails the cell (tests/test_edge_inputs)."""
    def run(d: Drill, tmp: Path):
        root = cifar(tmp / "cifar", data, labels)
        problem = one_line_error(d.ppds(dataset_fit(tmp, "cifar10", {"root": str(root)}), fakes=False),
                                 2, str(root / "test_batch"))
        return problem or one_line_error(d.ppds(dataset_fit(tmp, "cifar10", {"root": str(root)}), fakes=False),
                                         2, contains)
    return name, run


def bomb_case(d: Drill, tmp: Path):
    from PIL import Image

    folder = tmp / "imgs" / "a"
    folder.mkdir(parents=True)
    for i in range(3):
        Image.new("RGB", (8, 8), (i, i, i)).save(folder / f"{i}.png")
    Image.new("1", (20000, 20000)).save(folder / "bomb.png")  # 400 megapixels, a few kB on disk
    argv = dataset_fit(tmp, "imagenet-folder", {"root": str(tmp / "imgs")})
    return one_line_error(d.ppds(argv, fakes=False), 2, str(folder / "bomb.png"))


# ----------------------------------------------------------------------------- faults

def fault_case(how: str):
    """A metric that misbehaves as ``how``: the matrix completes, that unit failed, the rest ok, exit 1."""
    def run(d: Drill, tmp: Path):
        canary = write(tmp / "canary.txt", "still here")
        m = dict(TINY, metrics=[{"name": "fake-gap"}, {"name": f"fake-{how}", "timeout_min": 0.05}])
        cfg = write(tmp / "m.yaml", yaml.safe_dump(m))
        out = tmp / "run"
        p = d.ppds(["run", str(cfg), "--out", str(out), "--quiet"], timeout=300)
        if p.returncode != 1:
            return f"exit {p.returncode}, expected 1: {p.stderr[-300:]}"
        by = {r["name"]: r for r in rows(out)}
        bad = by.get(f"fake-{how}")
        if not bad or bad["status"] != "failed" or not bad.get("error"):
            return f"fake-{how} row: {bad}"
        if by.get("fake-gap", {}).get("status") != "ok":
            return f"the good metric is not ok: {by.get('fake-gap')}"
        if not (out / "leaderboard.md").exists():
            return "no leaderboard written"
        if canary.read_text() != "still here":
            return "canary changed"
        return unique_rows(out)
    return f"plugin-{how}", run


def escape_case(d: Drill, tmp: Path):
    canary = write(tmp / "canary.txt", "still here")
    write(tmp / "escaped" / "keep.txt", "keep")
    m = dict(TINY, metrics=[{"name": "fake-gap"}, {"name": "escape-name"}, {"name": "column-extra"}])
    cfg = write(tmp / "m.yaml", yaml.safe_dump(m))
    out = tmp / "a" / "b" / "run"
    p = d.ppds(["run", str(cfg), "--out", str(out), "--quiet"])
    if p.returncode != 1:
        return f"exit {p.returncode}, expected 1 (escape-name failed): {p.stderr[-300:]}"
    if canary.read_text() != "still here" or not (tmp / "escaped" / "keep.txt").exists():
        return "something outside the run folder was touched"
    outside = [q for q in tmp.rglob("*") if "escaped" in q.name and q.parent != tmp]
    if outside:
        return f"written outside: {outside}"
    col = [r for r in rows(out) if r["name"] == "column-extra"]
    if not col or col[0]["status"] != "ok" or col[0].get("seconds") == -1 or col[0].get("extra_seconds") != -1:
        return f"column-extra row: {col}"
    return unique_rows(out)


def not_pydantic_case(d: Drill, tmp: Path):
    p = d.ppds(["plugins", "show", "not-pydantic"])
    if "Traceback" in p.stderr + p.stdout:
        return "traceback in plugins show"
    if "broken" not in (p.stdout + p.stderr).lower():
        return f"not reported broken: {p.stdout[-300:]} {p.stderr[-300:]}"
    return None


def import_exit_case(d: Drill, tmp: Path):
    p = d.ppds(["plugins", "list"], broken=True)
    if p.returncode != 0 or "Traceback" in p.stderr:
        return f"plugins list exit {p.returncode}: {p.stderr[-300:]}"
    if "exits" not in p.stdout + p.stderr:
        return "the broken plugin is not named"
    cfg = write(tmp / "m.yaml", yaml.safe_dump(TINY))
    p = d.ppds(["run", str(cfg), "--check"], broken=True)
    return None if p.returncode == 0 else f"run --check exit {p.returncode}: {p.stderr[-300:]}"


def blocked_run(d: Drill, tmp: Path, metrics: list[dict]):
    """A ``ppds run`` started in the background and held inside ``fake-block`` (until the
    returned block file is deleted): (process, config, out folder, block file)."""
    block = tmp / "block"
    block.write_text("")
    cfg = write(tmp / "m.yaml", yaml.safe_dump(dict(TINY, metrics=metrics)))
    out = tmp / "run"
    env = d.env() | {"PPDS_FAKE_BLOCK": str(block)}
    proc = subprocess.Popen([sys.executable, "-m", "ppds_core", "run", str(cfg), "--out", str(out), "--quiet"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    deadline = time.time() + 120
    while not Path(str(block) + ".started").exists() and time.time() < deadline:
        time.sleep(0.1)
    return proc, cfg, out, block


def concurrent_case(d: Drill, tmp: Path):
    first, cfg, out, block = blocked_run(d, tmp, [{"name": "fake-block"}, {"name": "fake-gap"}])
    second = d.ppds(["run", str(cfg), "--out", str(out), "--quiet"])
    block.unlink()
    first.communicate(timeout=300)
    problem = one_line_error(second, 2, "another run is writing this folder")
    if problem:
        return "second run: " + problem
    if first.returncode != 0:
        return f"first run exit {first.returncode}"
    return unique_rows(out)


def kill_resume_case(d: Drill, tmp: Path):
    proc, cfg, out, block = blocked_run(d, tmp, [{"name": "fake-gap"}, {"name": "fake-block"}])
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate()
    block.unlink()
    before = len(rows(out))
    again = d.ppds(["run", str(cfg), "--out", str(out), "--quiet"])
    if again.returncode != 0:
        return f"resume exit {again.returncode}: {again.stderr[-300:]}"
    names = {r["name"] for r in rows(out)}
    if not {"fake-gap", "fake-block"} <= names:
        return f"rows after resume: {sorted(names)}"
    if len(rows(out)) <= before:
        return "nothing was added on resume"
    return unique_rows(out)


def tilde_case(d: Drill, tmp: Path):
    cfg = write(tmp / "m.yaml", yaml.safe_dump(TINY))
    home = tmp / "home"
    home.mkdir()
    env = d.env() | {"HOME": str(home)}
    p = subprocess.run([sys.executable, "-m", "ppds_core", "run", str(cfg), "--out", "~/x", "--quiet"],
                       env=env, cwd=tmp, capture_output=True, text=True, timeout=300)
    if p.returncode != 0:
        return f"exit {p.returncode}: {p.stderr[-300:]}"
    if (tmp / "~").exists():
        return "a folder literally named ~ was created"
    return None if (home / "x" / "results.jsonl").exists() else "no results under $HOME/x"


def markup_path_case(d: Drill, tmp: Path):
    cfg = write(tmp / "odd[/]name" / "m.yaml", yaml.safe_dump(TINY))
    p = d.ppds(["run", str(cfg), "--check"])
    if p.returncode != 0 or "MarkupError" in p.stderr:
        return f"exit {p.returncode}: {p.stderr[-300:]}"
    return None if "odd[/]name" in p.stdout else "the path is not printed as written"


class NotHere(Exception):
    """This machine cannot stage the case (e.g. no permission to mount a tmpfs)."""


def small_tmpfs(where: Path, size: str) -> Path:
    where.mkdir(parents=True, exist_ok=True)
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                       capture_output=True, text=True)
    if p.returncode:
        raise NotHere(f"cannot mount a tmpfs here ({p.stderr.strip() or p.returncode})")
    return where


def remount(where: Path, options: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{options}", str(where)], check=True, capture_output=True)


def disk_full_case(d: Drill, tmp: Path):
    """A 160 kB tmpfs fills mid-run: one line naming the space, then a re-run with room resumes."""
    mnt = small_tmpfs(tmp / "mnt", "160k")
    try:
        m = dict(TINY, samples=400, metrics=[{"name": "fake-gap"}, {"name": "fake-acc"}])
        cfg = write(tmp / "m.yaml", yaml.safe_dump(m))
        out = mnt / "run"
        p = d.ppds(["run", str(cfg), "--out", str(out), "--quiet"])
        if p.returncode not in (1, 2):
            return f"full disk: exit {p.returncode}: {p.stderr[-300:]}"
        problem = one_line_error(p, p.returncode, "free")
        if problem:
            return "full disk: " + problem
        remount(mnt, "size=50m")
        again = d.ppds(["run", str(cfg), "--out", str(out), "--quiet"])
        if again.returncode != 0:
            return f"re-run with room: exit {again.returncode}: {again.stderr[-300:]}"
        if list(out.rglob("*.tmp")):
            return f"temporary files left: {list(out.rglob('*.tmp'))}"
        return unique_rows(out)
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True)


def read_only_case(d: Drill, tmp: Path):
    """A folder that is read-only even for root (a read-only mount): one line, then a resume."""
    mnt = small_tmpfs(tmp / "mnt", "50m")
    try:
        cfg = write(tmp / "m.yaml", yaml.safe_dump(TINY))
        out = mnt / "run"
        first = d.ppds(["run", str(cfg), "--out", str(out), "--quiet"])
        if first.returncode != 0:
            return f"first run exit {first.returncode}"
        more = dict(TINY, metrics=[{"name": "fake-gap"}, {"name": "fake-acc"}])
        write(cfg, yaml.safe_dump(more))
        remount(mnt, "ro")
        p = d.ppds(["run", str(cfg), "--out", str(out), "--quiet"])
        problem = one_line_error(p, p.returncode if p.returncode in (1, 2) else -1, "Read-only file system")
        if problem:
            return "read-only: " + problem
        remount(mnt, "rw")
        again = d.ppds(["run", str(cfg), "--out", str(out), "--quiet"])
        if again.returncode != 0 or "fake-acc" not in {r["name"] for r in rows(out)}:
            return f"resume: exit {again.returncode}"
        return unique_rows(out)
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def cases() -> list[tuple[str, Callable]]:
    big = "x: " + "a" * (1 << 20) + "\n"
    out: list[tuple[str, Callable]] = [
        config_case("epsilons-true", "datasets: [{name: digits}]\ngenerators: [{name: dp-gan, epsilons: [true]}]\n",
                    "YAML boolean"),
        config_case("evaluator-epsilons-true", DIGITS.replace("[{name: ssim}]", "[{name: ssim, epsilons: [true]}]"),
                    "YAML boolean"),
        config_case("delta-half", DIGITS + "delta: 0.5\n", "not below 1/N"),
        config_case("delta-over-1/N", DIGITS + "delta: 0.01\n", "1/N"),
        config_case("seeds-duplicate", DIGITS + "seeds: [0, 0]\n", "twice"),
        config_case("seed-huge", DIGITS + "seeds: [99999999999]\n", "range"),
        config_case("lr-inf", DIGITS.replace("epsilons: [1]}", "epsilons: [1], config: {lr: .inf}}"), "finite"),
        config_case("samples-0", DIGITS + "samples: 0\n", "samples"),
        config_case("unknown-accountant", DIGITS + "accountant: magic\n", "accountant"),
        config_case("duplicate-key", DIGITS + "seeds: [0]\nseeds: [1]\n", "seeds"),
        config_case("binary-config", DIGITS.encode() + b"\xff\xfe\x00", "UTF-8"),
        config_case("billion-laughs", billion_laughs(), "alias"),
        config_case("oversized-config", big, "too large"),
        config_case("unknown-dataset", DIGITS.replace("digits", "nope"), "nope"),
        config_case("unknown-plugin-option", DIGITS.replace("epsilons: [1]}", "epsilons: [1], config: {lrr: 1}}"),
                    "lrr"),
        config_case("trainer-typo", DIGITS + "trainer: {acelerator: cpu}\n", "acelerator"),
        config_case("image-size-memory", "datasets: [{name: digits, config: {image_size: 4096}}]\n"
                    "generators: [{name: dp-gan, epsilons: [1]}]\n", "image_size"),
        ("path-with-markup", markup_path_case),
        ("tilde-out", tilde_case),
        argv_case("shard-bad", lambda tmp: ["run", str(write(tmp / "m.yaml", DIGITS)), "--shard", "3/2", "--check"],
                  contains="shard"),
        argv_case("shard-text", lambda tmp: ["run", str(write(tmp / "m.yaml", DIGITS)), "--shard", "a/b", "--check"],
                  contains="shard"),
        argv_case("fit-seed-huge", fit_argv(["--seed", "99999999999"]), contains="seed"),
        argv_case("fit-samples-0", fit_argv(["--samples", "0"]), contains="samples"),
        argv_case("fit-image-size-overflow", lambda tmp: fit_argv(
            ["--dataset-config", json.dumps({"image_size": 10**12})])(tmp), contains="image_size"),
        argv_case("fit-diffusion-image-size", lambda tmp: ["fit", "dp-diffusion", "--dataset", "digits", "--config",
                  json.dumps({"image_size": 10**12}), "--epsilon", "inf", "--out", str(tmp / "f"), "--quiet"],
                  contains="image_size"),
        argv_case("fit-out-is-a-file", lambda tmp: fit_argv([])(tmp)[:-2] + [str(write(tmp / "file", "x")), "--quiet"],
                  contains="file"),
        argv_case("fit-unknown-trainer-option", fit_argv(["--trainer", json.dumps({"acelerator": "cpu"})]),
                  contains="acelerator"),
        board_case("board-old-schema", [json.dumps({"cell": "a", "name": "x", "value": 1})], "older ppds"),
        board_case("board-not-an-object", ["[1, 2, 3]"], "no real results"),
        board_case("board-string-epsilon", [json.dumps({"kind": "metric", "epsilon": "ten"})], "results.jsonl"),
        argv_case("board-missing-folder", lambda tmp: ["leaderboard", str(tmp / "nowhere")], contains="nowhere"),
        cifar_case("cifar-values-over-255", [[0] + [300] * 3071] * 10, None, "test_batch"),
        cifar_case("cifar-string-labels", None, ["cat"] * 10, "test_batch"),
        ("decompression-bomb-png", bomb_case),
        argv_case("rero-1e6-steps", lambda tmp: ["bounds", "rero", "--kappa", "0.01", "--noise-multiplier", "1",
                  "--sample-rate", "0.01", "--steps", "1000000", "--max-minutes", "0.01"], contains="minutes"),
        ("hostile-names-and-extras", escape_case),
        ("plugin-config-not-pydantic", not_pydantic_case),
        ("plugin-exits-at-import", import_exit_case),
        ("concurrent-runs", concurrent_case),
        ("kill-9-and-resume", kill_resume_case),
        ("disk-full-and-resume", disk_full_case),
        ("read-only-folder-and-resume", read_only_case),
    ]
    out += [fault_case(how) for how in MISBEHAVIOURS_NAMES]
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-k", default="", help="run only the cases whose name contains this")
    args = ap.parse_args(argv)
    chosen = [(n, f) for n, f in cases() if args.k in n]
    failed = skipped = 0
    with tempfile.TemporaryDirectory(prefix="ppds-drill-") as tmp:
        drill = Drill(Path(tmp))
        for i, (name, run) in enumerate(chosen):
            case_dir = Path(tmp) / f"case-{i:02d}"
            case_dir.mkdir()
            t0 = time.time()
            try:
                problem = run(drill, case_dir)
            except NotHere as e:
                skipped += 1
                print(f"skip {name:32s} {e}", flush=True)
                continue
            except Exception as e:  # the drill itself must report, not stop
                problem = f"drill error: {type(e).__name__}: {e}"
            failed += problem is not None
            print(f"{'ok  ' if problem is None else 'FAIL'} {name:32s} {time.time() - t0:5.1f}s"
                  + (f"  {problem}" if problem else ""), flush=True)
    print(f"{len(chosen)} cases, {len(chosen) - failed - skipped} passed"
          + (f", {skipped} could not be staged here" if skipped else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
