"""`ppds` command line.

Each sub-command lives in its own ``cmd_*.py`` module exposing
``register(subparsers)``; they are discovered here, so adding a command never
touches this file. User mistakes (:class:`~ppds_core.errors.PpdsError`) print
one line and exit 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from .._version import __version__
from ..errors import PpdsError

__all__ = ["main", "build_parser"]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line + the hint, exit 2 (argparse's convention)
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="ppds",
        description="Train DP image generators, attack them, measure them, publish a leaderboard.",
    )
    parser.add_argument("--version", action="version", version=f"ppds {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    modules = sorted(m.name for m in pkgutil.iter_modules(__path__) if m.name.startswith("cmd_"))
    loaded = [importlib.import_module(f"{__name__}.{m}") for m in modules]
    for mod in sorted(loaded, key=lambda m: getattr(m, "ORDER", 50)):
        mod.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except PpdsError as err:
        print(f"ppds: error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("ppds: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
