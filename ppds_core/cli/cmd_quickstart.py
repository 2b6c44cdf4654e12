"""`ppds quickstart --out DIR`: the bundled embedded-data matrix, end to end."""

from __future__ import annotations

from .cmd_run import add_run_options, report_summary

ORDER = 35


def register(sub) -> None:
    p = sub.add_parser("quickstart", help="run the bundled quickstart matrix on embedded data")
    add_run_options(p, out_required=False, default_out="runs/quickstart")
    p.add_argument("--print-config", action="store_true", help="print the bundled matrix YAML and exit")
    p.set_defaults(func=_run)


def _run(args) -> int:
    from ..matrix import quickstart_config_path

    resource = quickstart_config_path()
    text = resource.read_text()
    if args.print_config:
        print(text, end="")
        return 0
    from ..matrix.config import parse_yaml
    from ..matrix.runner import run_matrix

    summary = run_matrix(parse_yaml(text, "quickstart.yaml"), args.out, shard=args.shard, smoke=args.smoke,
                         quiet=args.quiet)
    return report_summary(summary, args.quiet)
