"""Book-keeping clipping ("bk"): exact per-example clipping in ONE backward pass.

Bu et al., "Differentially Private Optimization on Large Model at Small Cost"
(ICML 2023), with mixed ghost clipping (Bu et al., AAAI 2023). Why: the other
modes either materialise every per-sample gradient (hooks, functorch, ew) or
run two backward passes (ghost). Here the forward stores each private layer's
input, the one backward computes only the gradients of the layer *outputs*
(``torch.autograd.grad`` towards a tap on each output, so autograd never
computes a parameter gradient), and then, per layer:

- the per-example gradient norm, by whichever is cheaper for the layer's
  shapes (a: B×T×d_in inputs, g: B×T×d_out output gradients, T positions):
  the *ghost norm* ‖gᵀa‖² = Σ_{t,t'} (a_t·a_t')(g_t·g_t') at ~B·T²·(d_in+d_out),
  chosen when 2T² < d_in·d_out, or the instantiated gᵀa at ~B·T·d_in·d_out;
- the clipped sum Σᵢ cᵢ·gᵢᵀaᵢ as one weighted product (a non-private weight
  gradient's cost), cᵢ = min(1, C/(‖∇ᵢ‖+1e-6)) exactly as Opacus clips.

Covered: Linear, Conv2d (zeros padding; unfold), Embedding, and the affine
parameters of GroupNorm / LayerNorm (their per-example gradients are B×C, so
they are always instantiated). Any other module owning trainable parameters
(subclasses of the above included: their forward may differ) gets exact
per-example gradients of its *own* parameters from ``torch.func`` (vmap of a
vjp over its stored inputs and output gradient) — never an approximation.

Rows per example (K) and a layer called several times per step: an
example's rows and calls are extra positions of that example (its gradient
is their sum), so they are concatenated along T before the norm — the norm
of the summed gradient, exactly what the engine's fold does for hooks.

The result is the clipped sum in ``p.grad``, which Opacus' FastGradientClipping
optimizer (the ghost mode's) accumulates, noises and divides by E[B].
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch import nn

from ._bk_layers import _covers, _instantiated, _own_params, _Part, norm_paths

__all__ = ["BookKeeping", "norm_paths"]

class _Tap(torch.autograd.Function):
    """Identity on a layer's output whose backward records the output's gradient.

    Its extra input ``anchor`` (one shared leaf) is what the engine asks
    autograd for, so the backward reaches every tap and no parameter."""

    @staticmethod
    def forward(ctx, anchor, out, record):  # noqa: ARG004
        ctx.record = record
        return out.view_as(out)

    @staticmethod
    def backward(ctx, grad):
        ctx.record(grad)
        return grad.new_zeros(()), grad, None


class BookKeeping:
    """Attached to ``module`` in place: taps, stored inputs, one backward, clipped sums."""

    def __init__(self, module: nn.Module, max_grad_norm: float) -> None:
        self.module, self.max_grad_norm = module, float(max_grad_norm)
        self._enabled, self._inside = True, False
        self._anchor = torch.zeros((), requires_grad=True)
        self._layers: list[tuple[nn.Module, Callable | None, list]] = []
        #: parameter name → how its norm was computed in the last step (ghost, instantiated,
        #: torch.func): the mixed choice depends on the batch's shapes, so it is observed
        self.last_norms: dict[str, str] = {}
        self._handles = []
        seen: set[int] = set()
        for m in module.modules():
            own = _own_params(m)
            if not own:
                continue
            if any(id(p) in seen for _, p in own):
                raise ValueError(f"grad_sample_mode 'bk' cannot clip a parameter shared by two "
                                 f"modules ({type(m).__name__}); use 'hooks'")
            seen.update(id(p) for _, p in own)
            calls: list = []
            self._layers.append((m, _covers(m), calls))
            self._handles.append(m.register_forward_hook(
                self._hook(calls, _covers(m) is not None), with_kwargs=True))

    def _hook(self, calls: list, covered: bool):
        def hook(m, args, kwargs, out):
            if (not self._enabled or self._inside or not m.training
                    or not torch.is_grad_enabled()):
                return None
            if not isinstance(out, torch.Tensor):
                raise ValueError(f"grad_sample_mode 'bk' needs {type(m).__name__} to return one "
                                 "tensor; use 'hooks' for this module")
            slot = [args[0].detach() if covered else (args, kwargs), None]
            calls.append(slot)
            anchor = self._anchor if self._anchor.device == out.device else \
                self._anchor.to(out.device)
            return _Tap.apply(anchor, out, lambda g: slot.__setitem__(1, g.detach()))
        return hook

    # -- the engine's interface -------------------------------------------------------

    def backward(self, per_sample_losses: torch.Tensor, rows_per_example: int = 1) -> None:
        """One backward to the layer outputs; the clipped sum of this batch in ``p.grad``."""
        b, k = per_sample_losses.shape[0], int(rows_per_example)
        for m, _, calls in self._layers:
            for slot in calls:
                rows = _batch_rows(slot[0])
                if rows != b * k:
                    raise RuntimeError(
                        f"{type(m).__name__} saw {rows} rows for {b} per-example losses × "
                        f"rows_per_example={k}: clipping would not be per example and ε would "
                        "be wrong; pass private_step(losses, rows_per_example=K)")
        if any(calls for _, _, calls in self._layers):
            torch.autograd.grad(per_sample_losses.sum(), [self._anchor], allow_unused=True)
        parts: list[_Part] = []
        for m, rule, calls in self._layers:
            done = [(x, g) for x, g in calls if g is not None]
            if done:
                new = rule(m, done, b) if rule else self._per_sample(m, done, b)
                parts += new if rule else [(*q[:3], "torch.func") for q in new]
            calls.clear()
        names = {id(p): n for n, p in self.module.named_parameters()}
        self.last_norms = {names[id(q[0])]: q[3] for q in parts}
        norms = torch.stack([q[1] for q in parts], 1).sum(1).sqrt() if parts else None
        clip = None if norms is None else (self.max_grad_norm / (norms + 1e-6)).clamp(max=1.0)
        grads: dict[int, torch.Tensor] = {}
        for p, _, clipped, _ in parts:
            gp = clipped(clip.to(p.dtype))
            grads[id(p)] = grads[id(p)] + gp if id(p) in grads else gp
        for p in self.module.parameters():
            if p.requires_grad:
                p.grad = grads.get(id(p), torch.zeros_like(p)).detach()

    def empty_batch(self) -> None:
        self.clear_stale()
        for p in self.module.parameters():
            if p.requires_grad:
                p.grad = torch.zeros_like(p)

    @contextmanager
    def disabled(self) -> Iterator[None]:
        self._enabled = False
        try:
            yield
        finally:
            self._enabled = True

    def clear_stale(self) -> None:
        for _, _, calls in self._layers:
            calls.clear()

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles, self._layers = [], []

    # -- the fallback --------------------------------------------------------------------

    def _per_sample(self, m: nn.Module, calls, b: int) -> list[_Part]:
        """Exact per-example gradients of ``m``'s own parameters by torch.func (vmap ∘ vjp)."""
        names = [n for n, _ in _own_params(m)]
        params = {n: getattr(m, n).detach() for n in names}
        total = None
        self._inside = True
        try:
            for (args, kwargs), gy in calls:
                batched = [isinstance(a, torch.Tensor) for a in args]

                def row(p, xs, gi, args=args, kwargs=kwargs, batched=batched):
                    it = iter(xs)
                    full = tuple(next(it).unsqueeze(0) if bt else a
                                 for a, bt in zip(args, batched, strict=True))
                    _, vjp = torch.func.vjp(
                        lambda q: torch.func.functional_call(m, q, full, kwargs), p)
                    return vjp(gi.unsqueeze(0))[0]

                xs = tuple(a.detach() for a, bt in zip(args, batched, strict=True) if bt)
                per_row = torch.func.vmap(row, in_dims=(None, 0, 0))(params, xs, gy)
                folded = {n: g.reshape(b, -1, *g.shape[1:]).sum(1) for n, g in per_row.items()}
                total = folded if total is None else {n: total[n] + folded[n] for n in names}
        finally:
            self._inside = False
        return [_instantiated(getattr(m, n), total[n]) for n in names]


def _batch_rows(saved) -> int:
    if isinstance(saved, torch.Tensor):
        return saved.shape[0]
    args, _ = saved
    return next(a.shape[0] for a in args if isinstance(a, torch.Tensor))
