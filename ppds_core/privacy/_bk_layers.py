"""Book-keeping's per-layer rules: per-example norms and clipped sums in closed form.

Each rule takes a layer, its recorded calls (stored input, output gradient) and the
number of examples B, and returns its parameters' parts: per-example squared norms
and a function c ↦ Σᵢ cᵢ∇ᵢ. ``_bookkeeping.BookKeeping`` (the taps, the one
backward, the clipping) owns the rest; see its docstring for the method.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

#: (parameter, per-example squared norms (B,), c ↦ Σᵢ cᵢ∇ᵢ, how the norm was computed)
_Part = tuple[nn.Parameter, torch.Tensor, Callable[[torch.Tensor], torch.Tensor], str]


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
    """Mixed ghost clipping's choice for one layer (Bu et al., AAAI 2023), then memory.

    The ghost norm needs the P×P Gram matrices of an example's P positions,
    instantiation its d_in×d_out gradient: ghost when 2P² < d_in·d_out — or when
    the B per-example gradients would not fit in :data:`INSTANTIATE_MAX_BYTES`.
    (A pure FLOP count favours instantiation more often, but on CPUs the
    instantiating kernels, small batched GEMMs or grouped convolutions, run far
    below the rate of the ghost path's large products: timed per layer shape on a
    2-core CPU while building this; rerun with benchmarks/bench_dpsgd.py and bench_unet.py.)
    """
    if 2 * positions * positions < d_in * d_out:
        return True
    return b * d_in * d_out * itemsize > INSTANTIATE_MAX_BYTES


def _total(ts) -> torch.Tensor:
    """Σ of an iterable of tensors without ``0 + t`` (which copies the first one)."""
    it = iter(ts)
    out = next(it)
    for t in it:
        out = out + t
    return out


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
            # one product over each example's K·T positions (a view when rows are contiguous):
            # the sum over its rows happens inside the GEMM, no per-row gradient is formed
            gs = _total(torch.bmm(_rows(g, b).transpose(1, 2), _rows(a, b)) for a, g in rows)
            parts.append(_instantiated(weight, gs))
    if bias is not None:
        parts.append(_instantiated(bias, _total(_fold(g.sum(1), b) for _, g in rows)))
    return parts


def _linear(m: nn.Linear, calls, b: int) -> list[_Part]:
    rows = [(x.reshape(x.shape[0], -1, x.shape[-1]), gy.reshape(gy.shape[0], -1, gy.shape[-1]))
            for x, gy in calls]

    def weight_sum(c):
        return _total((gy * _per_row(c, gy.shape[0]).view(-1, *[1] * (gy.ndim - 1)))
                      .reshape(-1, gy.shape[-1]).T @ x.reshape(-1, x.shape[-1]) for x, gy in calls)

    return _matrix_parts(m.weight, m.bias, rows, b, weight_sum)


def _conv2d(m: nn.Conv2d, calls, b: int) -> list[_Part]:
    k_l = sum(gy[0].numel() // gy.shape[1] * gy.shape[0] for _, gy in calls) // b  # positions
    if not _ghost_is_cheaper(k_l, m.weight[0].numel(), m.out_channels, b, m.weight.element_size()):
        return _conv2d_instantiated(m, calls, b)
    rows = [(_unfold(x, m).transpose(1, 2), gy.flatten(2).transpose(1, 2))
            for x, gy in calls]  # (N, L, C·kh·kw), (N, L, C_out)

    def weight_sum(c):  # torch's own weight-gradient kernel, on c-scaled output gradients
        return _total(torch.nn.grad.conv2d_weight(
            x, m.weight.shape, gy * _per_row(c, gy.shape[0]).view(-1, 1, 1, 1),
            m.stride, m.padding, m.dilation, m.groups) for x, gy in calls)

    return _matrix_parts(m.weight, m.bias, rows, b, weight_sum)


def _unfold(x: torch.Tensor, m: nn.Conv2d) -> torch.Tensor:
    """``F.unfold(x)`` for ``m``'s patches, (N, C·kh·kw, L), as a strided view and one copy
    (several times faster than im2col on CPU); dilated kernels use F.unfold."""
    if m.dilation != (1, 1):
        return F.unfold(x, m.kernel_size, m.dilation, m.padding, m.stride)
    (kh, kw), (sh, sw), (ph, pw) = m.kernel_size, m.stride, m.padding
    xp = F.pad(x, (pw, pw, ph, ph)) if ph or pw else x
    v = xp.unfold(2, kh, sh).unfold(3, kw, sw)  # N, C, Lh, Lw, kh, kw
    return v.permute(0, 1, 4, 5, 2, 3).reshape(x.shape[0], -1, v.shape[2] * v.shape[3])


def _positions(t: torch.Tensor, b: int) -> torch.Tensor:
    """(b·K, D, L) → (b, D, K·L): an example's rows side by side (a view when K = 1)."""
    k = t.shape[0] // b
    if k == 1:
        return t
    return t.view(b, k, *t.shape[1:]).transpose(1, 2).reshape(b, t.shape[1], k * t.shape[2])


def _grouped_is_faster(m: nn.Conv2d, rows: int) -> bool:
    """Per-row conv weight gradients: one grouped convolution (rows as groups) or an
    unfold and a batched product. Grouped wins for 3×3-like kernels over several input
    channels at moderate rows × channels; it falls far behind for one input channel,
    1×1 kernels and large rows × channels (timed per shape on a 2-core CPU)."""
    return m.weight[0].numel() >= 16 and m.weight[0, 0].numel() > 1 \
        and rows * m.in_channels < 8192


def _example_major(t: torch.Tensor, b: int) -> torch.Tensor:
    """(b·K, C, ...) → (K, b·C, ...): an example's K rows become the batch of its group
    (a view when K = 1)."""
    k = t.shape[0] // b
    if k == 1:
        return t.reshape(1, b * t.shape[1], *t.shape[2:])
    return t.view(b, k, *t.shape[1:]).transpose(0, 1).reshape(k, b * t.shape[1], *t.shape[2:])


def _conv2d_instantiated(m: nn.Conv2d, calls, b: int) -> list[_Part]:
    """Per-example weight gradients, summed over an example's rows (inside the kernel: the
    K rows are the batch of the example's group, or extra columns of its product)."""
    def per_example(x, gy):
        c_out = gy.shape[1]
        if _grouped_is_faster(m, x.shape[0]):
            gs = torch.nn.grad.conv2d_weight(
                _example_major(x, b), (b * c_out, *m.weight.shape[1:]), _example_major(gy, b),
                m.stride, m.padding, m.dilation, b)
        else:  # (b, C_out, K·L) @ (b, K·L, C·kh·kw)
            a = _unfold(x, m)
            gs = torch.bmm(_positions(gy.flatten(2), b), _positions(a, b).transpose(1, 2))
        return gs.view(b, *m.weight.shape)

    parts = [_instantiated(m.weight, _total(per_example(x, gy) for x, gy in calls))]
    if m.bias is not None:
        parts.append(_instantiated(m.bias, _total(_fold(gy.sum((2, 3)), b) for _, gy in calls)))
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
