"""Pairwise image similarity: MSE, PSNR, SSIM and LPIPS, per pair or as a distance matrix.

The reconstruction attack scores each reconstruction against its target
(:func:`pairwise_scores`); the matrix metrics look for each real image's
nearest synthetic sample (:func:`nearest_scores`). Both accept canonical
[0, 1] N×C×H×W images and convert at this edge:

- SSIM uses an 11-px Gaussian window (σ = 1.5) as usual, shrunk to the
  largest odd size that fits images smaller than 11 px (σ scaled alike).
- LPIPS (the ``lpips`` package) sees 3 channels (grayscale repeated), at
  least 32 px (bilinear upsampling: AlexNet's first stride-4 layers need it),
  scaled to [−1, 1]. Its linear calibration layers ship inside the ``lpips``
  wheel; the AlexNet/VGG backbone is torchvision's ImageNet checkpoint, read
  from a local file only. ``backbone_weights="random"`` (tests) gives a
  randomly initialised backbone, reported as ``lpips-randombackbone``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from torchmetrics.functional.image import structural_similarity_index_measure

from ppds_core import WeightsNotFoundError
from ppds_core.errors import UnsafeFileError
from ppds_core.safe_load import load_tensors

from .hub import find_weights
from .pixels import to_signed

__all__ = [
    "LPIPS_BACKBONE_ENV",
    "PAIRWISE_METRICS",
    "LpipsNet",
    "lpips_name",
    "load_lpips",
    "pairwise_scores",
    "nearest_scores",
    "mse",
    "psnr",
    "ssim",
]

#: environment variable naming a local torchvision backbone checkpoint for LPIPS
LPIPS_BACKBONE_ENV = "PPDS_LPIPS_BACKBONE"
PAIRWISE_METRICS = ("mse", "psnr", "ssim", "lpips")
LpipsNet = Literal["alex", "vgg"]
#: smallest side LPIPS is computed at
LPIPS_MIN_SIDE = 32
#: PSNR of an exact copy is infinite; aggregates cap it here (MSE 1e-10)
PSNR_CAP_DB = 100.0

_LPIPS_MODELS: dict[str, torch.nn.Module] = {}


# --------------------------------------------------------------------------- simple per-pair scores


def _check_pair(x: torch.Tensor, y: torch.Tensor) -> None:
    if x.shape != y.shape:
        raise ValueError(f"pairs must have equal shapes, got {tuple(x.shape)} and {tuple(y.shape)}")


def mse(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-pair mean squared error of images in [0, 1]."""
    _check_pair(x, y)
    return (x.double() - y.double()).pow(2).flatten(1).mean(1).float()


def psnr(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-pair PSNR in dB for data range 1: 10·log10(1/MSE) (inf for identical images)."""
    return _psnr_from_mse(mse(x, y))


def _psnr_from_mse(m: torch.Tensor) -> torch.Tensor:
    return 10 * torch.log10(1.0 / m.double()).float()


def _ssim_window(height: int, width: int) -> tuple[int, float]:
    side = min(11, height, width)
    size = side if side % 2 == 1 else side - 1
    return size, 1.5 * size / 11


def ssim(x: torch.Tensor, y: torch.Tensor, chunk: int = 1024) -> torch.Tensor:
    """Per-pair SSIM (torchmetrics, data range 1, Gaussian window; see module doc for small images)."""
    _check_pair(x, y)
    size, sigma = _ssim_window(x.shape[-2], x.shape[-1])
    out = [
        structural_similarity_index_measure(
            x[i : i + chunk].float(),
            y[i : i + chunk].float(),
            data_range=1.0,
            kernel_size=size,
            sigma=sigma,
            reduction="none",
        ).reshape(-1)
        for i in range(0, len(x), chunk)
    ]
    return torch.cat(out) if out else torch.empty(0)


# --------------------------------------------------------------------------- LPIPS


def lpips_name(net: LpipsNet = "alex", backbone_weights: str | Path | None = None) -> str:
    """The honest name of an LPIPS variant: ``lpips`` (AlexNet), ``lpips-vgg``, ``…-randombackbone``."""
    base = "lpips" if net == "alex" else f"lpips-{net}"
    return f"{base}-randombackbone" if backbone_weights == "random" else base


def _torchvision_weights(net: LpipsNet):
    from torchvision import models

    return (
        models.AlexNet_Weights.IMAGENET1K_V1
        if net == "alex"
        else models.VGG16_Weights.IMAGENET1K_V1
    )


def find_lpips_backbone(
    net: LpipsNet, configured: str | Path | None = None, download: bool = False
) -> Path:
    """The torchvision ImageNet checkpoint LPIPS's backbone needs, from a local path only."""
    url = _torchvision_weights(net).url
    return find_weights(what=f"LPIPS ({net}) torchvision ImageNet backbone", url=url,
                        filenames=[url.rsplit("/", 1)[-1]], option="backbone_weights",
                        configured=configured, env=LPIPS_BACKBONE_ENV, download=download)


def load_lpips(
    net: LpipsNet = "alex", backbone_weights: str | Path | None = None, download: bool = False
) -> torch.nn.Module:
    """An ``lpips.LPIPS`` model in eval mode with its backbone read from a local checkpoint.

    ``backbone_weights``: a file, None (look in ``$PPDS_LPIPS_BACKBONE`` and
    the torch hub cache), or ``"random"`` (seeded random backbone, for tests).
    """
    path = (
        None
        if backbone_weights == "random"
        else find_lpips_backbone(net, backbone_weights, download)
    )
    key = f"{net}|{path or 'random'}"
    if key in _LPIPS_MODELS:
        return _LPIPS_MODELS[key]
    import lpips  # the package: imported late, its import prints nothing but is slow

    with warnings.catch_warnings(), torch.random.fork_rng(devices=[]):
        warnings.simplefilter("ignore")  # torchvision's "pretrained is deprecated"
        torch.manual_seed(0)
        model = lpips.LPIPS(net=net, pretrained=True, pnet_rand=True, verbose=False)
    if path is not None:
        _load_backbone(model, path, net)
    model.requires_grad_(False).eval()
    _LPIPS_MODELS[key] = model
    return model


def _load_backbone(model: torch.nn.Module, path: Path, net: LpipsNet) -> None:
    """Copy ``features.<i>.*`` of a torchvision checkpoint into lpips' slices (child ``"<i>"``)."""
    state = load_tensors(path, f"LPIPS {net} backbone checkpoint")
    if not isinstance(state, dict):
        raise UnsafeFileError(f"{path}: not a state dict, so not torchvision's {net} checkpoint")
    wanted = {k for k in state if isinstance(k, str) and k.startswith("features.")}
    used: set[str] = set()
    try:
        for slice_ in model.net.children():
            for index, module in slice_.named_children():
                prefix = f"features.{index}."
                part = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
                module.load_state_dict(part)
                used |= {prefix + k for k in part}
    except RuntimeError as err:
        raise WeightsNotFoundError(
            f"{path} is not torchvision's {net} ImageNet checkpoint: {str(err).splitlines()[0]}"
        ) from None
    if not wanted or used != wanted:
        raise WeightsNotFoundError(
            f"{path} is not torchvision's {net} ImageNet checkpoint (its 'features.*' tensors do not match)"
        )


def _lpips_input(images: torch.Tensor) -> torch.Tensor:
    if images.shape[1] == 1:
        images = images.repeat(1, 3, 1, 1)
    side = min(images.shape[-2:])
    if side < LPIPS_MIN_SIDE:
        scale = LPIPS_MIN_SIDE / side
        size = (math.ceil(images.shape[-2] * scale), math.ceil(images.shape[-1] * scale))
        images = F.interpolate(images.float(), size=size, mode="bilinear", align_corners=False)
    return to_signed(images.float())


@torch.no_grad()
def lpips_pairs(
    model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 64
) -> torch.Tensor:
    """Per-pair LPIPS of images in [0, 1]."""
    _check_pair(x, y)
    out = [
        model(_lpips_input(x[i : i + batch_size]), _lpips_input(y[i : i + batch_size])).reshape(-1)
        for i in range(0, len(x), batch_size)
    ]
    return torch.cat(out) if out else torch.empty(0)


@torch.no_grad()
def _lpips_layers(model, images: torch.Tensor) -> list[torch.Tensor]:
    """Unit-normalised backbone features per layer, as LPIPS compares them."""
    import lpips

    feats = model.net.forward(model.scaling_layer(_lpips_input(images)))
    return [lpips.normalize_tensor(f).double() for f in feats]


@torch.no_grad()
def lpips_matrix(
    model, queries: torch.Tensor, keys: torch.Tensor, batch_size: int = 128
) -> torch.Tensor:
    """All-pairs LPIPS (len(queries) × len(keys)) without forming the pairs.

    LPIPS is Σ_l mean_hw Σ_c w_c (a_c − b_c)² over unit-normalised features a, b,
    which expands to Σ w a² + Σ w b² − 2 Σ (w a)·b: one backbone pass per image
    and a matrix product per layer instead of a backbone pass per pair.
    """
    weights = [lin.model[-1].weight.reshape(1, -1, 1, 1).double() for lin in model.lins]
    q_layers = _lpips_layers(model, queries)
    q_weighted = [(w * a) for w, a in zip(weights, q_layers, strict=True)]
    q_self = [
        (wa * a).flatten(1).sum(1) / (a.shape[-2] * a.shape[-1])
        for wa, a in zip(q_weighted, q_layers, strict=True)
    ]
    out = torch.zeros(len(queries), len(keys), dtype=torch.float64)
    for start in range(0, len(keys), batch_size):
        k_layers = _lpips_layers(model, keys[start : start + batch_size])
        for w, wa, qs, b in zip(weights, q_weighted, q_self, k_layers, strict=True):
            hw = b.shape[-2] * b.shape[-1]
            k_self = (w * b * b).flatten(1).sum(1) / hw
            cross = wa.flatten(1) @ b.flatten(1).T / hw
            out[:, start : start + batch_size] += qs[:, None] + k_self[None, :] - 2 * cross
    return out.clamp_(min=0).float()


# --------------------------------------------------------------------------- the two entry points


def pairwise_scores(
    x: torch.Tensor,
    y: torch.Tensor,
    which: Iterable[str] = PAIRWISE_METRICS,
    *,
    lpips_net: LpipsNet = "alex",
    backbone_weights: str | Path | None = None,
    download: bool = False,
) -> dict[str, torch.Tensor]:
    """Per-pair scores of ``x[i]`` against ``y[i]`` (N each, [0, 1]), keyed by metric name.

    Keys: ``mse``, ``psnr`` (dB; inf for identical pairs), ``ssim``, and the
    LPIPS variant's :func:`lpips_name`. Lower is more similar for MSE and
    LPIPS, higher for PSNR and SSIM. A missing LPIPS backbone raises
    SkipMeasurement (only when "lpips" is asked for).
    """
    which = list(which)
    unknown = set(which) - set(PAIRWISE_METRICS)
    if unknown:
        raise ValueError(
            f"unknown pairwise metrics {sorted(unknown)}; choose from {list(PAIRWISE_METRICS)}"
        )
    x, y = x.detach().cpu().float(), y.detach().cpu().float()
    out: dict[str, torch.Tensor] = {}
    if "mse" in which or "psnr" in which:
        m = mse(x, y)
        if "mse" in which:
            out["mse"] = m
        if "psnr" in which:
            out["psnr"] = _psnr_from_mse(m)
    if "ssim" in which:
        out["ssim"] = ssim(x, y)
    if "lpips" in which:
        model = load_lpips(lpips_net, backbone_weights, download)
        out[lpips_name(lpips_net, backbone_weights)] = lpips_pairs(model, x, y)
    return out


def _ssim_nearest(queries: torch.Tensor, keys: torch.Tensor, chunk: int = 2048) -> torch.Tensor:
    best = torch.full((len(queries),), -math.inf)
    step = max(chunk // max(len(keys), 1), 1)
    for start in range(0, len(queries), step):
        q = queries[start : start + step]
        pairs_q = q.repeat_interleave(len(keys), dim=0)
        pairs_k = keys.repeat(len(q), 1, 1, 1)
        best[start : start + step] = (
            ssim(pairs_q, pairs_k, chunk).reshape(len(q), len(keys)).max(1).values
        )
    return best


def nearest_scores(
    queries: torch.Tensor,
    keys: torch.Tensor,
    metric: str,
    *,
    lpips_net: LpipsNet = "alex",
    backbone_weights: str | Path | None = None,
    download: bool = False,
) -> torch.Tensor:
    """For each query image, its score against the *most similar* key image.

    min over keys for ``mse`` / ``lpips``, max for ``psnr`` / ``ssim`` — exact,
    all pairs considered (PSNR's best key is MSE's best key).
    """
    queries, keys = queries.detach().cpu().float(), keys.detach().cpu().float()
    if queries.shape[1:] != keys.shape[1:]:
        raise ValueError(
            f"image shapes differ: {tuple(queries.shape[1:])} vs {tuple(keys.shape[1:])}"
        )
    if metric in ("mse", "psnr"):
        d2 = torch.cdist(queries.flatten(1).double(), keys.flatten(1).double()).pow(2)
        best = (d2.min(1).values / queries[0].numel()).float()
        return best if metric == "mse" else _psnr_from_mse(best)
    if metric == "ssim":
        return _ssim_nearest(queries, keys)
    if metric == "lpips":
        model = load_lpips(lpips_net, backbone_weights, download)
        return lpips_matrix(model, queries, keys).min(1).values
    raise ValueError(f"unknown pairwise metric {metric!r}; choose from {list(PAIRWISE_METRICS)}")
