"""One table cell of the board (:class:`Entry`) and how its numbers are printed."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

__all__ = ["Entry", "fmt_interval", "fmt_value"]


def fmt_value(x: float) -> str:
    """A number as the boards print it: four significant digits."""
    return f"{x:.4g}"


def fmt_interval(lo: float | None, hi: float | None) -> str:
    """``[lo, hi]`` at three significant digits (an infinite end is ``−∞`` / ``∞``); a row that
    carries one end only is ``[≥ lo]`` / ``[≤ hi]``."""
    def f(x: float) -> str:
        return "∞" if x == math.inf else "−∞" if x == -math.inf else f"{x:.3g}"
    if hi is None:
        return f"[≥ {f(lo)}]" if lo is not None else ""
    if lo is None:
        return f"[≤ {f(hi)}]"
    return f"[{f(lo)}, {f(hi)}]"


@dataclass
class Entry:
    """One table cell: a measurement of one (dataset, generator, ε) over its seeds.

    ``ci_low`` / ``ci_high``: the rows' confidence interval (the mean of each end over
    seeds); shown as ``[lo, hi]`` for one seed, where the seeds' std is not there to show.
    ``best``: the best private row at its dataset and ε, clear of noise; ``within_noise``:
    best, but the runner-up lies inside this entry's interval (:meth:`interval`)."""

    mean: float | None = None
    std: float | None = None
    n_ok: int = 0
    n_failed: int = 0
    n_skipped: int = 0
    error: str | None = None
    best: bool = False
    ci_low: float | None = None
    ci_high: float | None = None
    within_noise: bool = False

    @property
    def status(self) -> str:
        if self.n_ok:
            return "ok"
        if self.n_failed:
            return "failed"
        if self.n_skipped:
            return "skipped"
        return "missing"

    @property
    def has_ci(self) -> bool:
        return self.ci_low is not None or self.ci_high is not None

    def interval(self) -> tuple[float, float] | None:
        """The noise band the best mark is checked against: the CI of a single seed, or
        mean ± std over several; None when neither is known."""
        if self.mean is None:
            return None
        if self.n_ok == 1 and self.has_ci:
            lo = -math.inf if self.ci_low is None else self.ci_low
            return lo, math.inf if self.ci_high is None else self.ci_high
        if self.std is not None:
            return self.mean - self.std, self.mean + self.std
        return None

    def value_text(self) -> str:
        """The value with its partial-failure note; ``failed`` / ``skipped`` / ``—`` otherwise."""
        if self.status != "ok":
            return {"failed": "failed", "skipped": "skipped", "missing": "—"}[self.status]
        s = fmt_value(self.mean)  # type: ignore[arg-type]
        bad = self.n_failed + self.n_skipped
        if bad:
            s += f" ({bad}/{bad + self.n_ok} {'failed' if self.n_failed else 'skipped'})"
        return s

    def uncertainty_text(self) -> str:
        """``± std`` over seeds, else ``[lo, hi]`` of one seed's CI, else ''."""
        if self.status != "ok":
            return ""
        if self.std is not None:
            return f"± {self.std:.2g}"
        return fmt_interval(self.ci_low, self.ci_high) if self.has_ci else ""

    def text(self) -> str:
        if self.status != "ok":
            return self.value_text()
        value, unc = self.value_text(), self.uncertainty_text()
        if unc:
            head, sep, tail = value.partition(" (")  # "0.81 ± 0.02 (1/3 failed)"
            value = f"{head} {unc}{sep}{tail}"
        return value

    def to_dict(self) -> dict[str, Any]:
        return {"mean": self.mean, "std": self.std, "ci_low": self.ci_low, "ci_high": self.ci_high,
                "n": self.n_ok, "n_seeds": self.n_ok, "failed": self.n_failed, "skipped": self.n_skipped,
                "status": self.status, "best": self.best, "within_noise": self.within_noise,
                "error": self.error}
