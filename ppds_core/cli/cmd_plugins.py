"""`ppds plugins list|show`."""

from __future__ import annotations

import json

from ..api import describe_plugin, list_plugins
from ._output import console, print_json, table

ORDER = 10


def register(sub) -> None:
    p = sub.add_parser("plugins", help="list plugins or show one's options")
    psub = p.add_subparsers(dest="plugins_command", metavar="ACTION", required=True)
    lst = psub.add_parser("list", help="every plugin: name, kind, distribution, version, status")
    lst.add_argument("--json", action="store_true", help="machine-readable output")
    lst.add_argument("--kind", choices=["generator", "metric", "attack", "dataset"])
    lst.set_defaults(func=_list)
    show = psub.add_parser("show", help="a plugin's config schema, defaults and capabilities")
    show.add_argument("name")
    show.add_argument("--json", action="store_true", help="machine-readable output")
    show.set_defaults(func=_show)


def _list(args) -> int:
    rows = list_plugins(args.kind)
    if args.json:
        print_json([r.to_dict() for r in rows])
        return 0
    table(
        "ppds plugins",
        ["name", "kind", "distribution", "version", "status"],
        [
            [r.name, r.kind, r.distribution, r.version,
             "[green]ok[/]" if r.status == "ok" else f"[red]broken[/]: {r.error}"]
            for r in rows
        ],
    )
    return 0


def _show(args) -> int:
    d = describe_plugin(args.name)
    if args.json:
        print_json(d)
        return 0
    console.print(f"[bold]{d['name']}[/] ({d['kind']}) — {d['distribution']} {d['version']}")
    if d["description"]:
        console.print(d["description"])
    props = d["config_schema"].get("properties", {})
    table(
        "config",
        ["option", "type", "default", "description"],
        [
            [k, v.get("type") or " | ".join(str(a.get("type")) for a in v.get("anyOf", [])),
             json.dumps(d["defaults"].get(k, "(required)"), default=str), v.get("description", "")]
            for k, v in props.items()
        ],
    )
    console.print("capabilities: " + json.dumps(d["capabilities"], default=str))
    return 0
