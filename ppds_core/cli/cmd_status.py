"""`ppds status DIR`: per cell and unit done / running (by which worker) / failed / pending,
who is writing the folder, an ETA."""

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


def _units(units: list[dict]) -> str:
    """``3 done, 1 running, 2 pending``: a cell's units by state."""
    order = ("done", "running", "stale", "failed", "pending")
    counts = {s: sum(u["state"] == s for u in units) for s in order}
    return ", ".join(f"{counts[s]} {s}" for s in order if counts[s])


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
    for h in ("#", "cell folder", "dataset", "generator", "ε", "seed", "state", "units", "failed"):
        t.add_column(h)
    for i, c in enumerate(st["cells"], 1):
        failed = "; ".join(f"{f['name']}: {f['error']}" for f in c["failed"])
        t.add_row(str(i), c["cell"] or "—", c["dataset"], c["generator"], c["epsilon"] or "—",
                  str(c["seed"]), c["state"], _units(c["units"]), escape(failed))
    console.print(t)
    n = st["units"]
    console.print(f"units: {n['done']} done, {n['running']} running, {n['failed']} failed, "
                  f"{n['pending']} pending" + (f", {n['stale']} stale (a silent worker's claim, "
                                                "taken over once its lease expires)" if n["stale"] else ""),
                  markup=False, highlight=False)
    for c in st["cells"]:
        for u in c["units"]:
            if u["state"] in ("running", "stale"):
                console.print(f"  {u['state']}: {u['label']} — worker {u['worker']} on {u['host']} "
                              f"(pid {u['pid']}) since {u['since']}, heartbeat {u['heartbeat_age_s']}s ago",
                              markup=False, highlight=False)
            elif u["state"] == "failed" and u["kind"] != "eval":
                console.print(f"  failed: {u['label']}: {u.get('error', '')}", markup=False, highlight=False)
    if st["running"]:
        console.print("running now: " + escape("; ".join(st["running"])))
    else:
        console.print("no run is writing this folder" + ("" if not st["to_run"] else
                      f"; `ppds run CONFIG --out {escape(st['folder'])}` resumes it"))
    if st["to_run"]:
        more = f" (+ {st['untimed_units']} units never timed)" if st["untimed_units"] else ""
        console.print(f"time left, from recorded unit durations: ≈ {_clock(st['eta_seconds'])}{more}"
                      + (f"; ≈ {_clock(st['eta_parallel_seconds'])} with the {len(st['workers'])} "
                         "workers running now" if len(st["workers"]) > 1 else ""))
    return 0
