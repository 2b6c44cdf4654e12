"""The small tree of errors a *user* can cause.

Everything under `PpdsError` is the user's to fix (a typo, a missing file, an
impossible budget). The CLI turns these into one line on stderr and exit code 2,
never a traceback. Anything else escaping the CLI is our bug and keeps its
traceback. Each message says what was wrong, where, and how to fix it.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = [
    "PpdsError",
    "ConfigError",
    "PluginNotFoundError",
    "PluginClashError",
    "BrokenPluginError",
    "DataNotFoundError",
    "WeightsNotFoundError",
    "BudgetError",
    "LedgerError",
    "RunStorageError",
    "UnsafeFileError",
    "SkipMeasurement",
    "did_you_mean",
]


class PpdsError(Exception):
    """A problem the user can fix; rendered as one line, exit code 2."""

    exit_code = 2


class ConfigError(PpdsError):
    """An invalid matrix config, plugin option or command-line value."""


class PluginNotFoundError(PpdsError, LookupError):
    """No plugin of that name (message carries a "did you mean")."""


class PluginClashError(PpdsError):
    """Two distributions register plugins with the same name."""


class BrokenPluginError(PpdsError):
    """The plugin exists but failed to load; its error is in the message."""


class DataNotFoundError(PpdsError, FileNotFoundError):
    """A dataset folder is missing or malformed; names the expected files."""


class WeightsNotFoundError(PpdsError, FileNotFoundError):
    """Pretrained weights are not on this machine; names the path and the fix."""


class BudgetError(PpdsError, ValueError):
    """A privacy budget or DP-SGD setting that cannot be honoured."""


class RunStorageError(PpdsError):
    """The run folder's disk is full or read-only: the run stopped, resumably (exit 1)."""

    exit_code = 1


class LedgerError(PpdsError):
    """A generator's ledger does not hold (its ε understates its spends, it overspends,
    or it calls a noisy release ε = ∞); the message names the plugin. The cell fails."""


class UnsafeFileError(PpdsError):
    """A weights, checkpoint or run-folder file ppds refuses to read or write: loading it
    could run code (a pickle of more than tensors), it is not the file it claims to be, or
    it names (or is linked to) a path outside the folder it belongs to."""


class SkipMeasurement(Exception):  # noqa: N818 - a signal, not an error
    """Raised by a metric or attack that does not apply to a cell.

    The runner records the measurement with status ``skipped`` and this
    exception's message as the reason (e.g. "needs DP-SGD parameters; the
    generator was trained without DP" or "Inception weights not found at …").
    """


def did_you_mean(name: str, candidates: Iterable[str]) -> str:
    """A ' — did you mean …?' suffix, or '' when nothing is close."""
    close = difflib.get_close_matches(name, sorted(set(candidates)), n=3, cutoff=0.6)
    if not close:
        return ""
    return " — did you mean " + " or ".join(repr(c) for c in close) + "?"
