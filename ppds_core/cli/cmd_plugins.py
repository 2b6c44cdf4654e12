"""`ppds plugins list|show`.

``list`` answers from the plugin cache (``ppds_core._plugin_cache``) where no entry
point changed, so it imports no plugin and no torch then; ``show`` imports the one
plugin it describes.
"""

from __future__ import annotations

import json
from typing import Any

ORDER = 10


def register(sub) -> None:
    p = sub.add_parser("plugins", help="list plugins or show one's options")
    psub = p.add_subparsers(dest="plugins_command", metavar="ACTION", required=True)
    lst = psub.add_parser("list", help="every plugin: name, kind, distribution, version, status")
    lst.add_argument("--json", action="store_true", help="machine-readable output")
    lst.add_argument("--kind", choices=["generator", "metric", "attack", "dataset"])
    lst.add_argument("--no-cache", action="store_true",
                     help="import every plugin instead of reading unchanged ones from the cache")
    lst.set_defaults(func=_list)
    show = psub.add_parser("show", help="a plugin's config schema, defaults and capabilities")
    show.add_argument("name")
    show.add_argument("--json", action="store_true", help="machine-readable output")
    show.set_defaults(func=_show)


def _list(args) -> int:
    from .._plugin_cache import list_plugins_cached
    from ._output import print_json, table

    rows = list_plugins_cached(args.kind, use_cache=not args.no_cache)
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


def option_type(prop: dict[str, Any], defs: dict[str, Any]) -> str:
    """An option's type as `plugins show` prints it: a Literal or enum lists its values."""
    if "$ref" in prop:
        prop = {**defs.get(prop["$ref"].rsplit("/", 1)[-1], {}), **{k: v for k, v in prop.items()
                                                                    if k != "$ref"}}
    if "const" in prop:
        return f"one of: {json.dumps(prop['const'])}"
    if "enum" in prop:
        return "one of: " + ", ".join(json.dumps(v) for v in prop["enum"])
    if "anyOf" in prop:
        return " | ".join(option_type(a, defs) for a in prop["anyOf"])
    if prop.get("type") == "array" and isinstance(prop.get("items"), dict) and prop["items"]:
        return f"array of {option_type(prop['items'], defs)}"
    return str(prop.get("type") or prop.get("title") or "any")


def _show(args) -> int:
    from ..api import describe_plugin
    from ._output import console, print_json, table

    d = describe_plugin(args.name)
    if args.json:
        print_json(d)
        return 0
    console.print(f"[bold]{d['name']}[/] ({d['kind']}) — {d['distribution']} {d['version']}")
    if d["description"]:
        console.print(d["description"])
    schema = d["config_schema"]
    props, defs = schema.get("properties", {}), schema.get("$defs", {})
    table(
        "config",
        ["option", "type", "default", "description"],
        [
            [k, option_type(v, defs), json.dumps(d["defaults"].get(k, "(required)"), default=str),
             v.get("description", "")]
            for k, v in props.items()
        ],
    )
    console.print("capabilities: " + json.dumps(d["capabilities"], default=str))
    return 0
