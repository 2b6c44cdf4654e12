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
import torch.nn.functional as F
from torch import nn

__all__ = ["BookKeeping", "norm_paths"]

#: (parameter, per-example squared norms (B,), c ↦ Σᵢ cᵢ∇ᵢ, how the norm was computed)
_Part = tuple[nn.Parameter, torch.Tensor, Callable[[torch.Tensor], torch.Tensor], str]


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


def _rows(t: torch.Tensor, b: int) -> torch.Tensor:
    """(b·K, ..., d) → (b, K·T, d): an example's rows and positions are one axis
    (a view when K = 1, so a transposed unfold is not copied)."""
    return t.reshape(b, -1, t.shape[-1])


def _cat(ts: list[torch.Tensor]) -> torch.Tensor:
    """Positions of several calls of one layer, side by side (no copy for one call)."""
    return ts[0] if len(ts) == 1 else torch.cat(ts, 1)


def _per_row(c: torch.Tensor, rows: int) -> torch.Tensor:
    """An example's clip factor on each of its K rows."""
    return c.repeat_interleave(rows // c.shape[0])


def _fold(t: torch.Tensor, b: int) -> torch.Tensor:
    """(b·K, ...) per-row tensors → (b, ...) per-example sums (a view when K = 1)."""
    return t if t.shape[0] == b else t.reshape(b, -1, *t.shape[1:]).sum(1)


def _instantiated(p: nn.Parameter, gs: torch.Tensor) -> _Part:
    flat = gs.reshape(gs.shape[0], -1)
    return p, torch.linalg.vector_norm(flat, dim=1).square(), \
        lambda c: (c @ flat).view_as(p), "instantiated"


#: the most memory (bytes) the instantiated per-example weight gradients of one layer
#: may take before its norm is taken the ghost way instead (Bu et al.'s reason for ghost
#: norms: a B × d_in × d_out tensor can be far larger than the activations)
INSTANTIATE_MAX_BYTES = 256 * 2**20


def _ghost_is_cheaper(positions: int, d_in: int, d_out: int, b: int, itemsize: int = 4) -> bool:
    """Mixed ghost clipping's choice for one layer, by time, then memory.

    Per example with P positions, the ghost path costs P²·(d_in + d_out) for the norm
    plus P·d_in·d_out for the clipped sum (a weight-gradient product); the
    instantiated path costs P·d_in·d_out for the per-example gradients plus
    d_in·d_out for the clipped sum. Both share P·d_in·d_out, so the ghost norm wins
    when P²·(d_in + d_out) < d_in·d_out — or when the B per-example gradients would
    not fit in :data:`INSTANTIATE_MAX_BYTES`.
    """
    if positions * positions * (d_in + d_out) < d_in * d_out:
        return True
    return b * d_in * d_out * itemsize > INSTANTIATE_MAX_BYTES


def _matrix_parts(weight, bias, rows: list[tuple[torch.Tensor, torch.Tensor]], b: int,
                  weight_sum: Callable[[torch.Tensor], torch.Tensor]) -> list[_Part]:
    """Parts of y = a·Wᵀ + b; ``rows``: per call, a: (b·K, T, d_in) and g: (b·K, T, d_out)
    (views, often transposed); ``weight_sum(c)`` is Σᵢ cᵢ·gᵢᵀaᵢ computed the layer's own
    way (one weighted product)."""
    k_t = sum(a.shape[0] * a.shape[1] for a, _ in rows) // b  # positions per example
    d_in, d_out = rows[0][0].shape[2], rows[0][1].shape[2]
    parts: list[_Part] = []
    if weight is not None:
        if _ghost_is_cheaper(k_t, d_in, d_out, b, weight.element_size()):  # over all positions
            a = _cat([_rows(a, b) for a, _ in rows])
            g = _cat([_rows(g, b) for _, g in rows])
            norm2 = (torch.bmm(a, a.transpose(1, 2)) * torch.bmm(g, g.transpose(1, 2))).sum((1, 2))
            parts.append((weight, norm2, weight_sum, "ghost"))
        else:  # instantiated row by row (bmm takes the transposed views as they are), then
            # each example's K rows summed; its clipped sum is the cheaper einsum over B
            gs = sum(_fold(torch.bmm(g.transpose(1, 2), a), b) for a, g in rows)
            parts.append(_instantiated(weight, gs))
    if bias is not None:
        parts.append(_instantiated(bias, sum(_fold(g.sum(1), b) for _, g in rows)))
    return parts


def _linear(m: nn.Linear, calls, b: int) -> list[_Part]:
    rows = [(x.reshape(x.shape[0], -1, x.shape[-1]), gy.reshape(gy.shape[0], -1, gy.shape[-1]))
            for x, gy in calls]

    def weight_sum(c):
        return sum((gy * _per_row(c, gy.shape[0]).view(-1, *[1] * (gy.ndim - 1)))
                   .reshape(-1, gy.shape[-1]).T @ x.reshape(-1, x.shape[-1]) for x, gy in calls)

    return _matrix_parts(m.weight, m.bias, rows, b, weight_sum)


def _conv2d(m: nn.Conv2d, calls, b: int) -> list[_Part]:
    k_l = sum(gy[0].numel() // gy.shape[1] * gy.shape[0] for _, gy in calls) // b  # positions
    if not _ghost_is_cheaper(k_l, m.weight[0].numel(), m.out_channels, b, m.weight.element_size()):
        return _conv2d_instantiated(m, calls, b)
    rows = [(F.unfold(x, m.kernel_size, m.dilation, m.padding, m.stride).transpose(1, 2),
             gy.flatten(2).transpose(1, 2)) for x, gy in calls]  # (N, L, C·kh·kw), (N, L, C_out)

    def weight_sum(c):  # torch's own weight-gradient kernel, on c-scaled output gradients
        return sum(torch.nn.grad.conv2d_weight(
            x, m.weight.shape, gy * _per_row(c, gy.shape[0]).view(-1, 1, 1, 1),
            m.stride, m.padding, m.dilation, m.groups) for x, gy in calls)

    return _matrix_parts(m.weight, m.bias, rows, b, weight_sum)


def _conv2d_instantiated(m: nn.Conv2d, calls, b: int) -> list[_Part]:
    """Per-row weight gradients in one grouped weight-gradient call (rows as groups), no
    unfold: the instantiated path's B·T·d_in·d_out without the im2col copy."""
    def per_row(x, gy):
        n, c_in, c_out = x.shape[0], x.shape[1], gy.shape[1]
        gs = torch.nn.grad.conv2d_weight(
            x.reshape(1, n * c_in, *x.shape[2:]), (n * c_out, *m.weight.shape[1:]),
            gy.reshape(1, n * c_out, *gy.shape[2:]), m.stride, m.padding, m.dilation, n)
        return _fold(gs.view(n, *m.weight.shape), b)

    parts = [_instantiated(m.weight, sum(per_row(x, gy) for x, gy in calls))]
    if m.bias is not None:
        parts.append(_instantiated(m.bias, sum(_fold(gy.sum((2, 3)), b) for _, gy in calls)))
    return parts


def _embedding(m: nn.Embedding, calls, b: int) -> list[_Part]:
    idx = _cat([i.reshape(b, -1) for i, _ in calls])
    g = _cat([_rows(gy, b) for _, gy in calls])
    if m.padding_idx is not None:  # the padding row gets no gradient
        g = g * (idx != m.padding_idx).unsqueeze(-1).to(g.dtype)
    v, d = m.weight.shape
    t = idx.shape[1]

    def clipped(c):
        return m.weight.new_zeros(v, d).index_add_(0, idx.reshape(-1),
                                                   (g * c[:, None, None]).reshape(-1, d))

    if t * t < v:  # ghost norm: positions with the same index share a row
        same = (idx.unsqueeze(2) == idx.unsqueeze(1)).to(g.dtype)
        return [(m.weight, (same * torch.bmm(g, g.transpose(1, 2))).sum((1, 2)), clipped, "ghost")]
    gs = g.new_zeros(b, v, d).scatter_add_(1, idx.unsqueeze(-1).expand(-1, -1, d), g)
    return [(m.weight, gs.reshape(b, -1).pow(2).sum(1), clipped, "instantiated")]


def _affine(m, calls, b: int, normalise, reduce_dims) -> list[_Part]:
    w_rows, b_rows = [], []

    def per_example(t, dims):  # (sum(()) would sum every dim)
        return _fold((t.sum(dims) if dims else t).reshape(-1, *m.weight.shape), b)

    for x, gy in calls:
        dims = reduce_dims(x)
        w_rows.append(per_example(normalise(x) * gy, dims))
        b_rows.append(per_example(gy, dims))
    parts = [_instantiated(m.weight, torch.stack(w_rows).sum(0))]
    if m.bias is not None:
        parts.append(_instantiated(m.bias, torch.stack(b_rows).sum(0)))
    return parts


def _group_norm(m: nn.GroupNorm, calls, b: int) -> list[_Part]:
    return _affine(m, calls, b, lambda x: F.group_norm(x, m.num_groups, eps=m.eps),
                   lambda x: tuple(range(2, x.ndim)))


def _layer_norm(m: nn.LayerNorm, calls, b: int) -> list[_Part]:
    ns = tuple(m.normalized_shape)
    return _affine(m, calls, b, lambda x: F.layer_norm(x, ns, eps=m.eps),
                   lambda x: tuple(range(1, x.ndim - len(ns))))


def _covers(m: nn.Module) -> Callable | None:
    """The closed-form rule of ``m``'s exact type, None → torch.func fallback."""
    kind = type(m)
    if kind is nn.Linear:
        return _linear
    if kind is nn.Conv2d and m.groups == 1 and m.padding_mode == "zeros" \
            and not isinstance(m.padding, str):
        return _conv2d
    if kind is nn.Embedding and m.max_norm is None and not m.scale_grad_by_freq \
            and not m.sparse:
        return _embedding
    if kind is nn.GroupNorm and m.affine:
        return _group_norm
    if kind is nn.LayerNorm and m.weight is not None:
        return _layer_norm
    return None


def norm_paths(module: nn.Module) -> dict[str, str]:
    """Which rule each parameter-owning submodule takes (for logs and docs)."""
    return {name or "<root>": (rule.__name__.strip("_") if (rule := _covers(m)) else "torch.func")
            for name, m in module.named_modules() if _own_params(m)}


def _own_params(m: nn.Module) -> list[tuple[str, nn.Parameter]]:
    return [(n, p) for n, p in m._parameters.items() if p is not None and p.requires_grad]


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
