"""Reconstruction from one privatized gradient with a diffusion prior ("Visual Privacy Auditing").

Schwethelm et al. (TMLR 2025): an adversary who observes one DP-SGD gradient
of a target image in the linear-layer threat model sees ``y = x + N(0, σ_eff²)``
(:mod:`._threat`); a diffusion model trained on data like the target's
denoises it (:mod:`._denoise`). Success is ``MSE(x̂, x) ≤ η``; its rate is
compared with the ReRo bound γ = Φ(Φ⁻¹(κ) + μ) (Hayes et al. 2023) at the
prior's base rate κ = sup over guesses z₀ of π(B_η(z₀)) — the hit rate of the
best fixed guess (mean image, class means, prior samples, images of π) on the
targets' distribution π, uniform over the private split (:mod:`._kappa`; exact
on the whole split, Clopper–Pearson upper end on a subsample, so κ is never
underestimated by sampling) — and with the uninformed adversary that outputs
y itself. Success rises with μ (less noise), and so does γ.

The prior is dp-diffusion's UNet trained *without* DP on ``prior: holdout``
(the attacker's real data, no distribution shift) or ``prior: public`` (e.g.
glyphs for digits: a shift, which the paper finds lowers success). It is
cached under ``ctx.cache_dir``.

Rows (names ``reconstruction-*``; with ``mus`` also ``reconstruction-*@mu=M``):
``mse`` / ``psnr`` / ``ssim`` (means over targets), ``success-rate`` (at η),
``kappa`` (the κ above; ``extra`` names the winning guess and keeps the
prior's mean mass around each target, the old, too small κ, for comparison),
``rero-bound`` (γ at that κ), ``rero-violation`` (1.0 when
the success rate's 95 % lower end exceeds the bound), ``uninformed-success-rate``,
``consistency-spearman`` (rank correlation between the spread of ``repeats``
reconstructions and their MSE: high = success predictable without the target).
The headline (the leaderboard's compact view) is ``success-rate`` at the
cell's own noise; a raised ``rero-violation`` is shown there too.
LPIPS (``reconstruction-lpips-vgg``) is reported when torchvision's backbone
checkpoint is on the machine; otherwise it is omitted and each row's
``extra["lpips"]`` says why and where to put the file.
Per-target arrays go to ``reconstruction.npz``, a sample grid to ``reconstructions.png``.
"""

from __future__ import annotations

import logging
import math
from typing import ClassVar, Literal

import numpy as np
import torch
from ppds_plugins.common.diffusion.config import DiffusionConfig
from ppds_plugins.common.pairwise import PSNR_CAP_DB, lpips_name, mse, pairwise_scores
from ppds_plugins.common.pixels import from_signed, to_signed
from pydantic import Field
from scipy import stats

from ppds_core import hookimpl
from ppds_core.atomic import atomic_open
from ppds_core.errors import SkipMeasurement, WeightsNotFoundError
from ppds_core.evaluation import clopper_pearson
from ppds_core.interfaces import Attack, EvalContext, Measurement, PluginConfig
from ppds_core.privacy.bounds import rero_gdp, uninformed_mse_cdf

__all__ = ["Reconstruction", "ReconstructionConfig", "run_reconstruction", "register_plugins"]


class ReconstructionConfig(PluginConfig):
    targets: int = Field(32, ge=2, description="private images attacked")
    prior: Literal["holdout", "public"] = Field("holdout", description="data the prior trains on")
    prior_steps: int = Field(3000, ge=1, description="Adam steps of (non-private) prior training")
    prior_batch_size: int = Field(128, ge=1)
    prior_lr: float = Field(2e-3, gt=0)
    prior_channels: list[int] = Field(default_factory=lambda: [32, 64],
                                      description="UNet channels per level (dp-diffusion's builder)")
    num_train_timesteps: int = Field(1000, ge=10)
    output_units: int = Field(1000, ge=1, description="M: width of the linear first layer")
    threshold: float = Field(0.02, gt=0, description="η: success when per-pixel MSE ≤ η ([0,1] units)")
    repeats: int = Field(4, ge=2, description="reconstructions per target (consistency estimate)")
    ddim_steps: int = Field(50, ge=2, description="grid of DDIM timesteps over the whole schedule")
    ddim_eta: float = Field(1.0, ge=0, le=1, description="DDIM stochasticity (1 = ancestral)")
    consistency: float = Field(1.0, ge=0, description="strength of the data-consistency pull (0 = off)")
    kappa_samples: int = Field(1000, ge=10, description="prior samples tried as κ's guesses")
    kappa_population: int = Field(
        5000, ge=2, description="images of the private split κ's hit rates are scored on "
        "(all of it when smaller: κ exact; else a seeded subsample and the CP upper end)")
    mus: list[float] = Field(default_factory=list,
                             description="extra μ = 1/σ to sweep besides the generator's own")
    lpips_net: Literal["alex", "vgg"] = Field("vgg", description="LPIPS backbone (the paper: VGG)")
    lpips_weights: str | None = Field(
        None, description="local torchvision backbone checkpoint; None = $PPDS_LPIPS_BACKBONE "
        "or the torch hub cache; LPIPS is omitted (with a note) when none is found")


def _prior_config(cfg: ReconstructionConfig) -> DiffusionConfig:
    groups = math.gcd(*cfg.prior_channels, 8)
    return DiffusionConfig(block_out_channels=list(cfg.prior_channels), norm_num_groups=groups,
                           lr=cfg.prior_lr, num_train_timesteps=cfg.num_train_timesteps,
                           noise_multiplicity=1)


def _to_canonical(x: torch.Tensor) -> torch.Tensor:
    return from_signed(x).float()


def run_reconstruction(cfg: ReconstructionConfig, targets: torch.Tensor, prior_data: torch.Tensor,
                       mus: list[float], max_grad_norm: float, seed: int, cache_dir=None, *,
                       population: torch.Tensor | None = None,
                       population_labels: torch.Tensor | None = None,
                       population_is_support: bool = False,
                       prior_labels: torch.Tensor | None = None) -> dict:
    """The attack at each μ: per-target metrics and the summary (library entry point).

    ``population``: images of π, the distribution the targets were drawn from
    (the private split, or a sample of it; ``population_is_support`` when it
    is the whole split, so κ is exact); ``None`` uses the targets themselves
    as a π-sample (κ then gets its Clopper–Pearson upper end).
    """
    from ._denoise import reconstruct, sample_prior
    from ._kappa import estimate_kappa, mean_guesses
    from ._prior import fit_or_load_prior
    from ._threat import observe

    shape = tuple(targets.shape[1:])
    if shape[-1] % 2 ** (len(cfg.prior_channels) - 1):
        raise SkipMeasurement(f"image side {shape[-1]} not divisible by 2^(levels−1) of "
                              f"prior_channels={cfg.prior_channels}; use fewer levels")
    prior = fit_or_load_prior(prior_data, _prior_config(cfg), cfg.prior_steps,
                              cfg.prior_batch_size, seed, cache_dir)
    eta = cfg.threshold
    pri = _to_canonical(sample_prior(prior, cfg.kappa_samples, steps=cfg.ddim_steps, seed=seed + 1))
    # the old, too small "κ": the prior's mass around each target (kept for comparison)
    d_prior = torch.stack([mse(pri, t.expand_as(pri)) for t in targets])  # (targets, samples)
    target_mass = (d_prior <= eta).sum(1).numpy() / cfg.kappa_samples
    if population is None:
        population, population_labels, population_is_support = targets, None, False
    guesses = {"mean": mean_guesses(population, population_labels),
               "prior-data-mean": mean_guesses(prior_data, prior_labels),
               "prior-sample": pri, "population-image": population}
    kap = estimate_kappa(population, guesses, eta, exact=population_is_support)
    kappa = kap["kappa"]
    d = int(np.prod(shape))
    out = {"kappa": kappa, "kappa_info": kap, "target_mass": target_mass,
           "prior_samples": pri[:64], "per_mu": {}}
    for mu in mus:
        sigma = 1.0 / mu
        g = torch.Generator().manual_seed(seed + int(1000 * mu))
        y, s = observe(targets, sigma, max_grad_norm, cfg.output_units, g)
        recs = []
        for r in range(cfg.repeats):
            xm = reconstruct(prior, to_signed(y), 2 * s, steps=cfg.ddim_steps,
                             consistency=cfg.consistency, eta=cfg.ddim_eta, seed=seed + 17 * r)
            recs.append(_to_canonical(xm))
        rec = recs[0]
        stack = torch.stack(recs)
        spread = stack.var(0).flatten(1).mean(1).numpy()
        scores = _pairwise(cfg, rec, targets)
        m = scores["mse"]
        success = m <= eta
        gamma = rero_gdp(kappa, mu)  # one κ for the prior, so one γ for every target
        uninformed = np.array([uninformed_mse_cdf(eta, d, float(si)) for si in s])
        rho = stats.spearmanr(spread, m).statistic if np.ptp(m) > 0 and np.ptp(spread) > 0 else 0.0
        out["per_mu"][mu] = {
            "sigma": sigma, "sigma_eff": s.numpy(), **scores, "success": success, "gamma": gamma,
            "uninformed": uninformed, "spread": spread, "consistency_spearman": float(rho),
            "observation": y.clamp(0, 1)[:16], "reconstruction": rec[:16],
        }
    return out


def _pairwise(cfg: ReconstructionConfig, rec: torch.Tensor, targets: torch.Tensor) -> dict:
    """MSE / PSNR (capped) / SSIM per target via the metrics' pairwise functions, LPIPS if possible."""
    s = pairwise_scores(rec, targets, ["mse", "psnr", "ssim"])
    out = {"mse": s["mse"].numpy(), "psnr": s["psnr"].clamp(max=PSNR_CAP_DB).numpy(),
           "ssim": s["ssim"].numpy(), "lpips": None, "lpips_note": ""}
    try:
        lp = pairwise_scores(rec, targets, ["lpips"], lpips_net=cfg.lpips_net,
                             backbone_weights=cfg.lpips_weights)
        out["lpips"] = lp[lpips_name(cfg.lpips_net, cfg.lpips_weights)].numpy()
        out["lpips_name"] = lpips_name(cfg.lpips_net, cfg.lpips_weights)
    except (SkipMeasurement, WeightsNotFoundError) as err:
        out["lpips_note"] = f"LPIPS omitted: {err}"
    return out


def _kappa_extra(info: dict, target_mass: np.ndarray) -> dict:
    return {"kappa_point": info["kappa_point"], "kappa_guess": info["guess"],
            "kappa_exact": info["exact"], "kappa_population": info["population"],
            "kappa_per_guess": info["per_guess"],
            "prior_mass_around_targets": float(target_mass.mean())}


def _rows(mu: float, res: dict, kappa: dict, suffix: str, extra: dict) -> list[Measurement]:
    n = len(res["mse"])
    k = int(res["success"].sum())
    rate = k / n
    lo, _ = clopper_pearson(np.array([k]), n)
    bound = float(res["gamma"])
    ex = {"mu": mu, "noise_multiplier": res["sigma"], "targets": n, **extra}
    if res["lpips_note"]:
        ex["lpips"] = res["lpips_note"]
    rows = [
        Measurement(f"reconstruction-mse{suffix}", float(res["mse"].mean()), True, dict(ex)),
        Measurement(f"reconstruction-psnr{suffix}", float(res["psnr"].mean()), False, dict(ex)),
        Measurement(f"reconstruction-ssim{suffix}", float(res["ssim"].mean()), False, dict(ex)),
        # the headline: how often the attack succeeds at the cell's own noise (not at extra μs)
        Measurement(f"reconstruction-success-rate{suffix}", rate, False,
                    {**ex, "ci_low": float(lo[0]), "rero_bound": bound}, headline=not suffix),
        Measurement(f"reconstruction-kappa{suffix}", kappa["value"], None,
                    {**ex, **kappa["extra"]}),
        Measurement(f"reconstruction-rero-bound{suffix}", bound, False,
                    {**ex, "kappa": kappa["value"]}),
        Measurement(f"reconstruction-rero-violation{suffix}", float(lo[0] > bound), False,
                    {**ex, "success_ci_low": float(lo[0])}, role="violation"),
        Measurement(f"reconstruction-uninformed-success-rate{suffix}",
                    float(res["uninformed"].mean()), False, dict(ex)),
        Measurement(f"reconstruction-consistency-spearman{suffix}",
                    res["consistency_spearman"], None, dict(ex)),
    ]
    if res["lpips"] is not None:
        rows.append(Measurement(f"reconstruction-{res['lpips_name']}{suffix}",
                                float(res["lpips"].mean()), True, dict(ex)))
    return rows


class Reconstruction(Attack):
    """Diffusion-prior reconstruction of private images from one privatized gradient."""

    name: ClassVar[str] = "reconstruction"
    Config = ReconstructionConfig
    description: ClassVar[str] = "Visual Privacy Auditing (Schwethelm et al. 2025) with a ReRo bound"
    needs: ClassVar[frozenset[str]] = frozenset({"dp-sgd"})
    higher_is_better: ClassVar[bool | None] = False

    @classmethod
    def smoke_config(cls, config):
        return config.model_copy(update={"targets": 4, "prior_steps": 5, "repeats": 2,
                                         "kappa_samples": 20, "ddim_steps": 5, "mus": []})

    def evaluate(self, ctx: EvalContext) -> list[Measurement]:
        cfg = self.config
        spend = ctx.ledger.dp_sgd() if ctx.ledger is not None else None
        if spend is None or not ctx.ledger.is_private or spend.noise_multiplier <= 0:
            raise SkipMeasurement("needs the generator's DP-SGD (σ, C); it was trained without DP")
        if cfg.prior == "public":
            if ctx.splits.public is None:
                raise SkipMeasurement("prior: public needs public data for the dataset "
                                      "(set `public:` in the matrix, e.g. glyphs)")
            source = ctx.splits.public
        else:
            source = ctx.splits.holdout
        from ._prior import match_shape

        priv = ctx.splits.private
        g = torch.Generator().manual_seed(ctx.seed + 23)
        idx = torch.randperm(len(priv), generator=g)[: cfg.targets]
        targets = priv.images[idx]
        prior_data = match_shape(source, tuple(targets.shape[1:]))
        # π: targets are drawn uniformly from the private split; κ is scored on it
        pop = torch.randperm(len(priv), generator=g)[: cfg.kappa_population]
        own_mu = 1.0 / spend.noise_multiplier
        mus = [own_mu] + [m for m in cfg.mus if m != own_mu]
        res = run_reconstruction(cfg, targets, prior_data, mus, spend.max_grad_norm,
                                 ctx.seed, ctx.cache_dir, population=priv.images[pop],
                                 population_labels=priv.labels[pop],
                                 population_is_support=len(pop) == len(priv),
                                 prior_labels=source.labels)
        extra = {"prior": cfg.prior, "threshold": cfg.threshold, "output_units": cfg.output_units}
        kappa = {"value": res["kappa"], "extra": _kappa_extra(res["kappa_info"], res["target_mass"])}
        rows = _rows(own_mu, res["per_mu"][own_mu], kappa, "", extra)
        for mu in mus[1:]:
            rows += _rows(mu, res["per_mu"][mu], kappa, f"@mu={mu:g}", extra)
        _save(ctx.workdir, res, targets[:16])
        return rows


def _save(workdir, res: dict, targets: torch.Tensor) -> None:
    workdir.mkdir(parents=True, exist_ok=True)
    arrays = {"kappa": np.asarray(res["kappa"]), "prior_mass_around_targets": res["target_mass"]}
    for mu, r in res["per_mu"].items():
        for key in ("mse", "ssim", "psnr", "success", "gamma", "spread", "sigma_eff"):
            arrays[f"mu={mu:g}/{key}"] = np.asarray(r[key])
    with atomic_open(workdir / "reconstruction.npz") as fh:  # never through a planted link
        np.savez_compressed(fh, **arrays)
    try:
        from torchvision.utils import save_image

        first = next(iter(res["per_mu"].values()))
        n = min(len(targets), 16)
        grid = torch.cat([targets[:n], first["observation"][:n], first["reconstruction"][:n]])
        save_image(grid, workdir / "reconstructions.png", nrow=n, padding=1)
    except Exception:  # noqa: BLE001 - a picture is a nicety, never a failure; but say why it is missing
        logging.getLogger("ppds.attacks").warning("reconstruction: could not draw %s", workdir / "reconstructions.png",
                                                  exc_info=True)


@hookimpl
def register_plugins(register):
    register(Reconstruction)
