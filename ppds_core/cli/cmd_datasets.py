"""`ppds datasets list`."""

from __future__ import annotations

ORDER = 20


def register(sub) -> None:
    p = sub.add_parser("datasets", help="datasets and whether each is available here")
    psub = p.add_subparsers(dest="datasets_command", metavar="ACTION", required=True)
    lst = psub.add_parser("list", help="each dataset, embedded or folder-based, and its availability")
    lst.add_argument("--json", action="store_true", help="machine-readable output")
    lst.set_defaults(func=_list)


def _list(args) -> int:
    from ..api import list_datasets
    from ._output import print_json, table

    rows = list_datasets()
    if args.json:
        print_json(rows)
        return 0
    table(
        "ppds datasets",
        ["name", "source", "available", "detail"],
        [
            [r["name"], "embedded" if r["embedded"] else "folder",
             "[green]yes[/]" if r["available"] else "[red]no[/]", r["detail"]]
            for r in rows
        ],
    )
    return 0
