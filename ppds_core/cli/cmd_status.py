"""`ppds status DIR`: per cell done / to run / failed, who is writing the folder, an ETA."""

from __future__ import annotations

ORDER = 38


def register(sub) -> None:
    p = sub.add_parser("status", help="what a run folder holds: cells done, to run, failed; an ETA",
                       description="Read a run folder (nothing runs): each cell's state, failures "
                                   "(first line), whether a run is writing it now, and the time "
                                   "left from the units' recorded durations.")
    p.add_argument("dir", metavar="DIR", help="the --out folder of a `ppds run`")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_status)


def _clock(seconds: float) -> str:
    minutes, s = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{s:02d}" if hours else f"{minutes}:{s:02d}"


def _status(args) -> int:
    from rich.markup import escape
    from rich.table import Table

    from ..matrix._status import run_status
    from ._output import console, print_json

    st = run_status(args.dir)
    if args.json:
        print_json(st)
        return 0
    t = Table(title=f"{st['matrix']}{' (smoke)' if st['smoke'] else ''}: {len(st['cells'])} cells, "
                    f"{st['done']} done, {st['to_run']} to run, {st['with_failures']} with failures")
    for h in ("#", "cell folder", "dataset", "generator", "ε", "seed", "state", "failed"):
        t.add_column(h)
    for i, c in enumerate(st["cells"], 1):
        failed = "; ".join(f"{f['name']}: {f['error']}" for f in c["failed"])
        t.add_row(str(i), c["cell"] or "—", c["dataset"], c["generator"], c["epsilon"] or "—",
                  str(c["seed"]), c["state"], escape(failed))
    console.print(t)
    if st["running"]:
        console.print("running now: " + escape("; ".join(st["running"])))
    else:
        console.print("no run is writing this folder" + ("" if not st["to_run"] else
                      f"; `ppds run CONFIG --out {escape(st['folder'])}` resumes it"))
    if st["to_run"]:
        more = f" (+ {st['untimed_units']} units never timed)" if st["untimed_units"] else ""
        console.print(f"time left, from recorded unit durations: ≈ {_clock(st['eta_seconds'])}{more}")
    return 0
