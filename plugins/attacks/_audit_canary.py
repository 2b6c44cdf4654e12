"""Dirac canaries on a generator's own private module, trained by the engine's own code path.

Why this construction: an audit must observe the update the engine *releases*
(Poisson batch, per-sample gradients of the configured grad mode, K-row folding,
clipping, noise, 1/E[B], physical slices), not a step rebuilt beside the engine.
So the audit trains the generator's private module with :func:`fit_private`,
and only the per-example *losses* are the audit's.

A loss whose per-sample gradient is a known vector is easy to build on a linear
layer: for ``nn.Linear`` (or ``nn.ConvNd`` fed an input of the kernel's size, so
its output is one position) the input λ·e_u gives, for output unit o,
∂y_o/∂W = λ at exactly one weight coordinate, whatever the weights are. Canary j
is such a loss on its own weight coordinate (norm λ ≥ 100·C: clipped to C when
clipping works). All other parameters of the private module are frozen in the
audit's copy, so a canary's clipped gradient lands on its coordinate alone, the
coordinates of absent canaries see only noise, and since the noise is i.i.d. per
coordinate every canary is an independent run of the mechanism (Nasr et al.
2023's Dirac canaries; one training run audits all of them).

With K rows per example (DPDM's multiplicity), row 0 carries the canary and rows
1..K−1 are zero inputs subtracted from it: the bias gradients cancel and the K
row gradients must be *summed* by the engine for the canary to reach norm λ.
With K = 1 the bias receives 1 per canary, so the canary's clipped share on its
coordinate is λ/√(λ² + 1) (≥ 0.99995 of C), which the analysis uses as the shift.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.utils.data import TensorDataset

from ppds_core.interfaces import FitContext
from ppds_core.privacy.engine import DPSGDModule, DPSGDPlan, fit_private

__all__ = ["CanaryLayer", "Observations", "find_canary_layer", "run_canary_fit"]

#: canary gradient norm / C: far above the clipping bound (clipping off shows at once)
CANARY_SCALE = 100.0


@dataclass(frozen=True)
class CanaryLayer:
    """A linear layer of the private module and the weight coordinates canaries can own."""

    name: str
    layer: nn.Module
    #: per target: flat weight index, flat input index, output unit
    weight_index: np.ndarray
    input_index: np.ndarray
    output_unit: np.ndarray
    input_shape: tuple[int, ...]


def _conv_targets(layer: nn.Module) -> CanaryLayer | None:
    if layer.groups != 1 or layer.padding_mode != "zeros" or isinstance(layer.padding, str):
        return None
    if any(d != 1 for d in layer.dilation):
        return None
    k, p = tuple(layer.kernel_size), tuple(layer.padding)
    size = tuple(ki - 2 * pi for ki, pi in zip(k, p, strict=True))  # the output is one position
    if any(s < 1 for s in size):
        return None
    cin, cout = layer.in_channels, layer.out_channels
    o, c, *pos = np.meshgrid(np.arange(cout), np.arange(cin), *(np.arange(s) for s in size),
                             indexing="ij")
    o, c, pos = o.ravel(), c.ravel(), [q.ravel() for q in pos]
    offs = [q + pi for q, pi in zip(pos, p, strict=True)]  # kernel offset that sees the pixel
    w = np.ravel_multi_index((o, c, *offs), (cout, cin, *k))
    x = np.ravel_multi_index((c, *pos), (cin, *size))
    return CanaryLayer("", layer, w, x, o, (cin, *size))


def _linear_targets(layer: nn.Linear) -> CanaryLayer:
    o, i = np.meshgrid(np.arange(layer.out_features), np.arange(layer.in_features), indexing="ij")
    o, i = o.ravel(), i.ravel()
    return CanaryLayer("", layer, o * layer.in_features + i, i, o, (layer.in_features,))


def find_canary_layer(private: nn.Module, need: int = 0) -> CanaryLayer:
    """The Linear/Conv layer of ``private`` to place canaries on (refuses a module with none).

    The smallest layer (by weight count) with at least ``need`` canary coordinates and
    ``need`` other weights —
    per-sample gradients cost batch × weights, so a small layer keeps the audit cheap —
    else the one with the most.
    """
    found: list[CanaryLayer] = []
    for name, m in private.named_modules():
        if not any(p.requires_grad for p in m.parameters(recurse=False)):
            continue
        if isinstance(m, nn.Linear):
            cand = _linear_targets(m)
        elif isinstance(m, nn.Conv1d | nn.Conv2d | nn.Conv3d):
            cand = _conv_targets(m)
        else:
            continue
        if cand is not None:
            found.append(dataclasses.replace(cand, name=name))
    if not found:
        raise ValueError("the private module has no nn.Linear or nn.ConvNd layer to place "
                         "canaries on")
    # ... and as many weights no canary owns (the noise check's coordinates)
    fits = [c for c in found if len(c.weight_index) >= need and c.layer.weight.numel() >= 2 * need]
    best = (min(fits, key=lambda c: c.layer.weight.numel()) if fits
            else max(found, key=lambda c: len(c.weight_index)))
    _check_dirac(best)
    return best


def _check_dirac(cl: CanaryLayer) -> None:
    """Verify (plain autograd, on a copy) that a few canaries' gradients are Diracs."""
    w = cl.layer.weight.detach().clone().requires_grad_(True)
    for j in np.linspace(0, len(cl.weight_index) - 1, 5).astype(int):
        x = torch.zeros(1, int(np.prod(cl.input_shape)))
        x[0, cl.input_index[j]] = 1.0
        out = _forward_with_weight(cl.layer, x.view(1, *cl.input_shape), w)
        (g,) = torch.autograd.grad(out.reshape(1, -1)[0, cl.output_unit[j]], w)
        nz = torch.nonzero(g.reshape(-1)).reshape(-1).tolist()
        if nz != [int(cl.weight_index[j])]:
            raise RuntimeError(f"canary layer {cl.name!r}: gradient is not a Dirac at the "
                               f"expected coordinate ({nz[:4]} vs {int(cl.weight_index[j])})")


def _forward_with_weight(layer: nn.Module, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    if isinstance(layer, nn.Linear):
        return nn.functional.linear(x, w, layer.bias)
    return layer._conv_forward(x, w, layer.bias)


@dataclass
class Observations:
    """What the released updates showed, in units of C (sum of clipped gradients + noise).

    ``z[j, t]``: canary j's coordinate at step t (members first); ``included[j, t]``:
    canary j was in step t's Poisson batch; ``noise_sumsq`` / ``noise_count``: Σ z²
    over the coordinates no canary owns.
    """

    z: np.ndarray
    is_member: np.ndarray
    included: np.ndarray
    noise_sumsq: float
    noise_count: int
    shift: float

    @staticmethod
    def pool(parts: list[Observations]) -> Observations:
        return Observations(
            np.concatenate([p.z for p in parts]), np.concatenate([p.is_member for p in parts]),
            np.concatenate([p.included for p in parts]),
            float(sum(p.noise_sumsq for p in parts)), int(sum(p.noise_count for p in parts)),
            min(p.shift for p in parts))


class _CanaryModule(DPSGDModule):
    """The generator's private module and optimizer; the losses are the audit's canaries."""

    def __init__(self, recipe: DPSGDModule, cl: CanaryLayer, slots: np.ndarray,
                 n_members: int, rows_per_example: int, unit: float, lam: float):
        super().__init__()
        self.private = recipe.private_module()
        object.__setattr__(self, "_recipe", recipe)  # not a submodule: only its optimizer
        object.__setattr__(self, "_layer", cl.layer)
        self.cl, self.k, self.n_members, self.unit, self.lam = cl, rows_per_example, n_members, unit, lam
        self.slots = slots  # canary j owns target slots[j] (members are dataset rows 0..n−1)
        canary_w = cl.weight_index[slots]
        self.canary_w = torch.as_tensor(canary_w)
        mine = np.zeros(cl.layer.weight.numel(), bool)
        mine[canary_w] = True
        self.noise_w = torch.from_numpy(np.flatnonzero(~mine))
        self.z: list[np.ndarray] = []
        self.included: list[np.ndarray] = []
        self.noise_sumsq, self.noise_count = 0.0, 0
        self._pending: np.ndarray | None = None

    def private_module(self) -> nn.Module:
        return self.private

    def configure_private_optimizer(self) -> torch.optim.Optimizer:
        return self._recipe.configure_private_optimizer()

    def canary_losses(self, ix: torch.Tensor) -> torch.Tensor:
        n, k, cl = ix.shape[0], self.k, self.cl
        x = torch.zeros(n * k, int(np.prod(cl.input_shape)), device=self.device)
        canary = ix < self.n_members
        j = ix[canary].cpu().numpy()
        cols = torch.as_tensor(cl.input_index[self.slots[j]], device=self.device)
        x[torch.nonzero(canary).reshape(-1) * k, cols] = self.lam
        out = self._layer(x.view(n * k, *cl.input_shape)).reshape(n, k, -1)
        units = torch.zeros(n, dtype=torch.long, device=self.device)
        units[canary] = torch.as_tensor(cl.output_unit[self.slots[j]], device=self.device)
        picked = out.gather(2, units.view(n, 1, 1).expand(n, k, 1)).squeeze(2)  # (n, k)
        loss = picked[:, 0] - picked[:, 1:].mean(1) if k > 1 else picked[:, 0]
        return loss * canary.to(loss.dtype)  # fillers: zero loss, zero gradient

    def training_step(self, batch, batch_idx):
        (ix,) = batch
        inc = np.zeros(len(self.canary_w), bool)
        members = ix[ix < self.n_members].cpu().numpy()
        inc[members] = True
        self._pending = inc
        self.private_step_in_chunks((ix,), self.canary_losses, rows_per_example=self.k)

    def on_private_release(self, dp_optimizer) -> None:
        g = self._layer.weight.grad.detach().reshape(-1).double().cpu() * self.unit
        self.z.append(g[self.canary_w].numpy())
        noise = g[self.noise_w]
        self.noise_sumsq += float((noise * noise).sum())
        self.noise_count += int(noise.numel())
        self.included.append(self._pending)


def run_canary_fit(recipe: DPSGDModule, plan: DPSGDPlan, *, num_examples: int,
                   noise_multiplier: float, max_grad_norm: float, sample_rate: float,
                   steps: int, canaries: int, ctx: FitContext,
                   rng: np.random.Generator) -> tuple[Observations, dict]:
    """One engine fit of ``recipe``'s private module with ``canaries`` member canaries
    (dataset rows 0..canaries−1 of ``num_examples``) and as many absent ones."""
    private = recipe.private_module()
    want = min(int(canaries), int(num_examples))
    cl = find_canary_layer(private, 2 * want)  # among the layers the generator trains privately
    for p in private.parameters():
        p.requires_grad_(False)
    for p in cl.layer.parameters(recurse=False):
        p.requires_grad_(True)
    n = min(want, len(cl.weight_index) // 2, cl.layer.weight.numel() // 3)
    slots = rng.choice(len(cl.weight_index), size=2 * n, replace=False)
    k = int(getattr(recipe, "rows_per_example", 1))
    lam = CANARY_SCALE * max_grad_norm
    # E[B] = q·N (the ledger's): the released p.grad times E/C is (Σ clipped + noise)/C
    unit = sample_rate * num_examples / max_grad_norm
    module = _CanaryModule(recipe, cl, slots, n, k, unit, lam)
    audit_plan = dataclasses.replace(plan, epochs=None, steps=int(steps),
                                     noise_multiplier=float(noise_multiplier), other_spends=(),
                                     progress_every=None)
    data = TensorDataset(torch.arange(int(num_examples)))
    ledger = fit_private(module, data, audit_plan, ctx)
    has_bias = getattr(cl.layer, "bias", None) is not None and k == 1
    obs = Observations(
        z=np.stack(module.z, 1), is_member=np.r_[np.ones(n, bool), np.zeros(n, bool)],
        included=np.stack(module.included, 1), noise_sumsq=module.noise_sumsq,
        noise_count=module.noise_count,
        shift=(lam / math.sqrt(lam * lam + 1.0)) if has_bias else 1.0)
    info = {"canary_layer": cl.name, "canary_layer_type": type(cl.layer).__name__,
            "rows_per_example": k, "grad_sample_mode": plan.grad_sample_mode,
            "max_physical_batch_size": plan.max_physical_batch_size,
            "recipe_batch_size": plan.batch_size, "recipe_max_grad_norm": plan.max_grad_norm,
            "engine_steps": module.dp.steps_done, "engine_epsilon": ledger.epsilon_spent}
    return obs, info

