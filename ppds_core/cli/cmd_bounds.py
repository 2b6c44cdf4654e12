"""`ppds bounds epsilon|rero`: privacy numbers from the command line, no model needed.

Both answer questions a researcher asks before (or instead of) training:
"what ε does this DP-SGD schedule give?" and "how likely could *any*
reconstruction attack succeed against it?" (the ReRo bound).
"""

from __future__ import annotations

import math
import sys
import time

from ..errors import ConfigError
from ._output import console, err_console, print_json

ORDER = 60


def register(sub) -> None:
    p = sub.add_parser("bounds", help="ε of DP-SGD and ReRo reconstruction bounds")
    psub = p.add_subparsers(dest="bounds_command", metavar="ACTION", required=True)

    eps = psub.add_parser("epsilon", help="ε of Poisson-subsampled DP-SGD")
    eps.add_argument("--noise-multiplier", type=float, required=True, metavar="S",
                     help="σ: noise std / clipping norm")
    eps.add_argument("--sample-rate", type=float, required=True, metavar="Q",
                     help="q: Poisson sampling rate (expected batch / dataset size)")
    eps.add_argument("--steps", type=int, required=True, metavar="T", help="number of DP-SGD steps")
    eps.add_argument("--delta", type=float, required=True, metavar="D", help="δ")
    eps.add_argument("--accountant", default="prv", metavar="{rdp,prv,gdp}",
                     help="accountant (default prv; gdp is the CLT approximation)")
    eps.add_argument("--json", action="store_true", help="machine-readable output")
    eps.set_defaults(func=_epsilon)

    rero = psub.add_parser(
        "rero", help="ReRo bound γ on reconstruction success (Hayes, Mahloujifar & Balle 2023)",
        description="ReRo bound γ on reconstruction success (Hayes, Mahloujifar & Balle 2023). The "
                    "DP-SGD bound (--noise-multiplier) costs time: its Monte-Carlo cross-check draws "
                    "2 × --samples × --steps Gaussians (~30 ns each) and the reported PLD bound grows "
                    "with √steps. Before running, ppds times a small probe on this machine: an estimate "
                    "above 30 s is announced on stderr and a progress bar follows; an estimate above "
                    "--max-minutes is refused, naming the estimate (lower --samples: the reported γ "
                    "does not depend on it, or raise --max-minutes)."
    )
    rero.add_argument("--kappa", type=float, required=True, metavar="K",
                      help="the prior's base success rate κ in (0, 1), e.g. 1/n for n candidates")
    which = rero.add_mutually_exclusive_group(required=True)
    which.add_argument("--mu", type=float, metavar="M", help="μ of a μ-GDP mechanism")
    which.add_argument("--epsilon", type=float, metavar="E", help="ε of an (ε, δ)-DP mechanism")
    which.add_argument("--noise-multiplier", type=float, metavar="S",
                       help="σ of DP-SGD (with --sample-rate and --steps): Monte Carlo")
    rero.add_argument("--delta", type=float, metavar="D", help="δ, with --epsilon")
    rero.add_argument("--sample-rate", type=float, metavar="Q", help="q, with --noise-multiplier")
    rero.add_argument("--steps", type=int, metavar="T", help="T, with --noise-multiplier")
    rero.add_argument("--samples", type=int, default=100_000, metavar="N",
                      help="Monte-Carlo draws under each of P and Q (default 100000)")
    rero.add_argument("--seed", type=int, default=0, help="Monte-Carlo seed (default 0)")
    rero.add_argument("--confidence", type=float, default=0.95,
                      help="level of the Monte-Carlo interval (default 0.95)")
    rero.add_argument("--max-minutes", type=float, default=10.0, metavar="M",
                      help="refuse a DP-SGD bound estimated to take longer (default 10)")
    rero.add_argument("--json", action="store_true", help="machine-readable output")
    rero.set_defaults(func=_rero)


def _check_mechanism(sigma: float, q: float, steps: int) -> None:
    if not (sigma > 0 and math.isfinite(sigma)):
        raise ConfigError(f"--noise-multiplier must be finite and > 0, got {sigma}")
    if not 0 < q <= 1:
        raise ConfigError(f"--sample-rate must be in (0, 1], got {q}")
    if steps < 1:
        raise ConfigError(f"--steps must be ≥ 1, got {steps}")


def _check_delta(delta: float) -> None:
    if not 0 < delta < 1:
        raise ConfigError(f"--delta must be in (0, 1), got {delta}")


def _epsilon(args) -> int:
    from ..privacy.accounting import check_accountant, dp_sgd_epsilon, gdp_mu

    check_accountant(args.accountant)
    _check_mechanism(args.noise_multiplier, args.sample_rate, args.steps)
    _check_delta(args.delta)
    eps = dp_sgd_epsilon(args.noise_multiplier, args.sample_rate, args.steps, args.delta,
                         args.accountant)
    out = {
        "noise_multiplier": args.noise_multiplier,
        "sample_rate": args.sample_rate,
        "steps": args.steps,
        "delta": args.delta,
        "sampling": "poisson",
        "accountant": args.accountant,
        "epsilon": eps,
    }
    if args.accountant == "gdp":
        out["mu"] = gdp_mu([(args.noise_multiplier, args.sample_rate, args.steps)])
        out["approximation"] = ("central-limit approximation: may under-report ε, never "
                                "used to calibrate or fill a ledger")
    if args.json:
        print_json(out)
        return 0
    extra = f", μ = {out['mu']:.4g}" if "mu" in out else ""
    console.print(
        f"ε = [bold]{eps:.4g}[/] at δ = {args.delta:g} ({args.accountant}{extra}) for "
        f"{args.steps} steps of Poisson-subsampled DP-SGD, σ = {args.noise_multiplier:g}, "
        f"q = {args.sample_rate:g}"
        + (f"\n[yellow]approximation[/]: {out['approximation']}" if "approximation" in out else "")
    )
    return 0


def _rero(args) -> int:
    from ..privacy.bounds import rero_dp, rero_gdp

    if not 0 < args.kappa < 1:
        raise ConfigError(f"--kappa must be in (0, 1), got {args.kappa} (e.g. 1/n for n candidates)")
    if args.delta is not None and args.epsilon is None:
        raise ConfigError("--delta goes with --epsilon (the (ε, δ)-DP bound)")
    if (args.sample_rate is not None or args.steps is not None) and args.noise_multiplier is None:
        raise ConfigError("--sample-rate and --steps go with --noise-multiplier (the DP-SGD bound)")
    out: dict = {"kappa": args.kappa}
    if args.mu is not None:
        if not args.mu >= 0:
            raise ConfigError(f"--mu must be ≥ 0, got {args.mu}")
        out |= {"mechanism": "gdp", "mu": args.mu, "gamma": rero_gdp(args.kappa, args.mu)}
        text = f"μ-GDP with μ = {args.mu:g}"
    elif args.epsilon is not None:
        if args.delta is None:
            raise ConfigError("--epsilon needs --delta (the δ of the (ε, δ)-DP guarantee)")
        if not args.epsilon >= 0:
            raise ConfigError(f"--epsilon must be ≥ 0, got {args.epsilon}")
        _check_delta(args.delta)
        out |= {"mechanism": "dp", "epsilon": args.epsilon, "delta": args.delta,
                "gamma": rero_dp(args.kappa, args.epsilon, args.delta)}
        text = f"(ε, δ)-DP with ε = {args.epsilon:g}, δ = {args.delta:g}"
    else:
        more, text = _rero_dpsgd(args)
        out |= more
    if args.json:
        print_json(out)
        return 0
    console.print(f"γ = [bold]{out['gamma']:.4g}[/] at κ = {args.kappa:g} for {text}")
    return 0


#: announce a bound estimated to take longer than this (seconds), with a progress bar
_NOTE_SECONDS = 30.0
#: cost model of the PLD bound plus its discretised cross-check, (fixed s, s per step):
#: measured on a shared 2-core machine at ~10 s for T = 10³, ~25 s at 10⁵, ~90 s at 10⁶
_PLD_SECONDS = (8.0, 8e-5)


def _seconds(s: float) -> str:
    return f"{s:.0f} s" if s < 120 else f"{s / 60:.0f} min" if s < 7200 else f"{s / 3600:.1f} h"


def _probe_ns_per_draw(sigma: float, q: float, steps: int) -> float:
    """Nanoseconds per Gaussian draw of the Monte Carlo on this machine: two ~10 ms chunks
    timed (the faster counts), with their own generator so the result is untouched."""
    import numpy as np

    from ..privacy.bounds import _CHUNK_ELEMENTS, _privacy_loss_samples

    if q >= 1.0:
        return 0.0  # a full-batch mechanism costs one draw per sample, whatever T
    width = min(steps, 4096)
    rows = max(1, _CHUNK_ELEMENTS // width)
    best = math.inf
    for _ in range(2):
        t0 = time.perf_counter()
        _privacy_loss_samples(np.random.default_rng(0), rows, sigma, q, width, True)
        best = min(best, time.perf_counter() - t0)
    return best / (rows * width) * 1e9


def _check_cost(args) -> float:
    """Estimated seconds of the DP-SGD bound; ConfigError above --max-minutes, a note above 30 s."""
    if not args.max_minutes > 0:
        raise ConfigError(f"--max-minutes must be > 0, got {args.max_minutes}")
    ns = _probe_ns_per_draw(args.noise_multiplier, args.sample_rate, args.steps)
    monte_carlo = 2 * args.samples * args.steps * ns * 1e-9
    pld = _PLD_SECONDS[0] + _PLD_SECONDS[1] * args.steps
    total = monte_carlo + pld
    detail = (f"{_seconds(monte_carlo)} of Monte Carlo, 2 × {args.samples:,} × {args.steps:,} draws at "
              f"{ns:.0f} ns each (timed here), and ~{_seconds(pld)} of privacy-loss distributions")
    if total > 60 * args.max_minutes:
        room = 60 * args.max_minutes - pld
        fit = int(room / (2 * args.steps * ns * 1e-9)) if room > 0 and ns > 0 else 0
        fit = int(float(f"{fit:.2g}"))  # a round number to type
        fix = (f"lower --samples (--samples {fit} fits; the reported γ, the PLD bound, does not depend "
               "on it) or raise --max-minutes") if fit >= 100 else "raise --max-minutes"
        raise ConfigError(f"bounds rero: this bound would take about {_seconds(total)} here: {detail}; "
                          f"over --max-minutes {args.max_minutes:g}: {fix}")
    if total > _NOTE_SECONDS:  # one plain line (no rich wrapping), then the progress bar
        sys.stderr.write(f"ppds: this bound takes about {_seconds(total)}: {detail}\n")
    return total


def _rero_dpsgd(args) -> tuple[dict, str]:
    """The DP-SGD bound's fields and sentence, with a cost check up front and progress on
    stderr when it is long."""
    from ..privacy.accounting import gdp_mu
    from ..privacy.bounds import rero_dpsgd, rero_gdp, rero_numerical, rero_pld

    if args.sample_rate is None or args.steps is None:
        raise ConfigError("--noise-multiplier needs --sample-rate and --steps")
    _check_mechanism(args.noise_multiplier, args.sample_rate, args.steps)
    if args.samples < 100:
        raise ConfigError(f"--samples must be ≥ 100, got {args.samples}")
    if not 0 < args.confidence < 1:
        raise ConfigError(f"--confidence must be in (0, 1), got {args.confidence}")
    history = [(args.noise_multiplier, args.sample_rate, args.steps)]
    long = _check_cost(args) > _NOTE_SECONDS
    from rich.progress import Progress

    with Progress(console=err_console, transient=True, disable=not long) as bar:
        task = bar.add_task("Monte Carlo", total=2 * args.samples * args.steps)
        est = rero_dpsgd(args.kappa, *history[0], samples=args.samples, seed=args.seed,
                         confidence=args.confidence, progress=lambda k: bar.advance(task, k))
        bar.add_task("privacy-loss distributions (no progress to show)", total=None)
        gamma, numerical = rero_pld(args.kappa, history), rero_numerical(args.kappa, history)
    mu_clt = gdp_mu(history)
    out = {
        "mechanism": "dp-sgd",
        "noise_multiplier": args.noise_multiplier,
        "sample_rate": args.sample_rate,
        "steps": args.steps,
        # the bound (pessimistic PLD), never the Monte-Carlo point estimate (issue 12)
        "gamma": gamma,
        "point_estimate": est.gamma,
        "ci_low": est.ci_low,
        "ci_high": est.ci_high,
        "confidence": est.confidence,
        "samples": est.samples,
        "seed": args.seed,
        "threshold": est.threshold,
        "mu_gdp": mu_clt,
        "gamma_gdp": rero_gdp(args.kappa, mu_clt),
        "gamma_numerical": numerical,
    }
    text = (
        f"{args.steps} steps of Poisson-subsampled DP-SGD, σ = {args.noise_multiplier:g}, "
        f"q = {args.sample_rate:g} (pessimistic privacy-loss distribution: an upper "
        f"bound); Monte Carlo γ̂ = {est.gamma:.4g} with {est.samples} draws under each of "
        f"P and Q (seed {args.seed}), {est.confidence:.0%} interval "
        f"[{est.ci_low:.4g}, {est.ci_high:.4g}]; discretised privacy loss gives "
        f"{numerical:.4g}; GDP approximation μ = {mu_clt:.4g} gives {out['gamma_gdp']:.4g}"
    )
    return out, text
