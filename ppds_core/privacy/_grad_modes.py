"""Per-sample gradients for one private module, in each of Opacus' four modes.

The engine needs one thing from a grad-sample mode: given the per-sample
losses of a batch, leave on every private parameter what the matching Opacus
optimizer clips and noises (``p.grad_sample`` for hooks / functorch / ew, the
already-clipped sum in ``p.grad`` for ghost). Everything mode-specific lives
here so the engine's step is one call.

All modes attach to the author's module *in place* (no wrapper module in the
LightningModule's tree: a ``GradSampleModule`` stored as an attribute of the
LightningModule recurses forever, and under DDP a wrapper is what makes
replicas drift). Per-sample losses are summed before backward
(``loss_reduction="sum"`` on the hooks), so row *i* of every per-sample
gradient is exactly ∇ loss_i however many forward calls built the losses; the
optimizer then divides by the expected batch size (``"mean"``), as Opacus does.

Rows per example: a private module may see several rows per example (DPDM's
noise multiplicity: K noisy copies of each image). Opacus then computes one
gradient per *row*, and clipping each row to C would let one example move the
model by K·C while the accountant assumes C. So after backward every
per-sample gradient must have exactly (examples × rows_per_example) rows, and
the K rows of each example are summed into one before the optimizer clips.
A mismatch is an error, never a silent per-row clip.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from .plan import GRAD_SAMPLE_MODES  # the names (and what each does) live with the plan

__all__ = ["GRAD_SAMPLE_MODES", "PerSampleGradients", "fold_rows_per_example", "make_dp_optimizer",
           "resolve_grad_sample_mode"]

#: modules that own parameters and return something other than one tensor: 'bk' taps a
#: layer's output, so it cannot take them (Opacus has DP replacements for them under 'hooks')
_NOT_ONE_TENSOR = (nn.MultiheadAttention, nn.RNNBase)


def resolve_grad_sample_mode(module: nn.Module, mode: str) -> tuple[str, str]:
    """(the mode to use, why) for ``mode``; ``auto`` becomes the fastest exact mode here.

    The choice is a cost model, checked against timed runs of every mode
    (benchmarks/bench_dpsgd.py and bench_unet.py, which print what ``auto``
    picked beside the fastest mode measured): ``bk`` — one backward, closed-form
    norms and clipped sums, exact torch.func for layers without a closed form —
    was the fastest exact mode on every module and batch measured that it can
    run; ``hooks`` is the fallback where it cannot (a parameter shared by two
    modules; a parameter-owning module that returns a tuple). ``ew`` is never
    picked (it fails on some models, e.g. diffusers' UNet), nor ``functorch`` and
    ``ghost`` (slower than ``hooks`` in every measurement).
    """
    if mode != "auto":
        return mode, "asked for"
    owners: dict[int, str] = {}
    for name, m in module.named_modules():
        for p in m._parameters.values():
            if p is None or not p.requires_grad:
                continue
            if id(p) in owners:
                return "hooks", (f"auto: {name or type(m).__name__} shares a parameter with "
                                 f"{owners[id(p)]}, which bk cannot clip")
            owners[id(p)] = name or type(m).__name__
        if isinstance(m, _NOT_ONE_TENSOR) and any(p.requires_grad for p in m._parameters.values()
                                                   if p is not None):
            return "hooks", f"auto: {name} ({type(m).__name__}) returns a tuple, which bk cannot tap"
    return "bk", "auto: one backward (book-keeping), the fastest exact mode measured"


class PerSampleGradients:
    """Per-sample gradient machinery of one mode, attached to ``module`` in place."""

    def __init__(self, module: nn.Module, mode: str, max_grad_norm: float) -> None:
        if mode not in GRAD_SAMPLE_MODES:
            raise ValueError(f"unknown grad-sample mode {mode!r}; choose one of {GRAD_SAMPLE_MODES}")
        _validate(module)
        self.module = module
        #: the mode in use (``auto`` resolved) and why it was chosen
        mode, self.reason = resolve_grad_sample_mode(module, mode)
        self.mode = mode
        self.max_grad_norm = max_grad_norm
        self._hooks = None
        self._ew = None
        self._bk = None
        if mode == "bk":
            from ._bookkeeping import BookKeeping

            self._bk = BookKeeping(module, max_grad_norm)
        elif mode in ("hooks", "functorch"):
            from opacus.grad_sample import GradSampleHooks

            self._hooks = GradSampleHooks(
                module, batch_first=True, loss_reduction="sum", force_functorch=mode == "functorch"
            )
        elif mode == "ghost":
            from opacus.grad_sample import GradSampleHooksFastGradientClipping

            self._hooks = GradSampleHooksFastGradientClipping(
                module, batch_first=True, loss_reduction="sum",
                max_grad_norm=max_grad_norm, use_ghost_clipping=True,
            )
        else:
            self._ew = _ExpandedWeightsForward(module)
        if self._hooks is not None:
            self._hooks.forbid_grad_accumulation()  # Poisson batches are never accumulated
        # Opacus' conv grad samplers (opacus 1.6) compute wrong per-sample gradients for a
        # channels_last input — diffusers' attention blocks emit such tensors — and a wrong
        # per-sample gradient is clipped wrongly: sensitivity is no longer C. Hand every conv
        # a contiguous input (same values, standard layout) while the hooks are on.
        self._layout = [m.register_forward_pre_hook(_contiguous_inputs) for m in module.modules()
                        if self._hooks is not None and isinstance(m, nn.modules.conv._ConvNd)]

    def backward(self, per_sample_losses: torch.Tensor, optimizer, rows_per_example: int = 1) -> None:
        """Backward of the batch's per-example losses, ready for ``optimizer.step()``.

        ``rows_per_example``: how many rows of the private module's input belong to
        each example (each loss already reduces over its example's rows).
        """
        k = int(rows_per_example)
        if k < 1:
            raise ValueError(f"rows_per_example must be ≥ 1, got {rows_per_example}")
        if self._bk is not None:
            self._bk.backward(per_sample_losses, k)
        elif self.mode == "ghost":
            if k > 1:
                raise ValueError(
                    "grad_sample_mode 'ghost' clips per row from per-row norms, so it cannot "
                    f"combine {k} rows per example before clipping; use 'hooks' or 'functorch'"
                )
            from opacus.utils.fast_gradient_clipping_utils import DPTensorFastGradientClipping

            DPTensorFastGradientClipping(self._hooks, optimizer, per_sample_losses, "sum").backward()
        else:
            per_sample_losses.sum().backward()
            fold_rows_per_example(self.module, per_sample_losses.shape[0], k)

    def empty_batch(self) -> None:
        """An empty Poisson batch: zero per-sample gradients, so the step is noise only.

        (functorch and ExpandedWeights cannot backpropagate a batch of size 0.)
        """
        if self._bk is not None:
            self._bk.empty_batch()
            return
        for p in self.module.parameters():
            if not p.requires_grad:
                continue
            if self.mode == "ghost":
                p.grad = torch.zeros_like(p)
            else:
                p.grad_sample = p.new_zeros((0, *p.shape))

    @contextmanager
    def disabled(self) -> Iterator[None]:
        """Forward/backward through the private module without per-sample bookkeeping."""
        if self._bk is not None:
            with self._bk.disabled():
                yield
        elif self._hooks is not None:
            self._hooks.disable_hooks()
            try:
                yield
            finally:
                self._hooks.enable_hooks()
        else:
            with self._ew.disabled():
                yield

    def clear_stale(self) -> None:
        """Drop activations captured by forwards that were never backpropagated."""
        if self._bk is not None:
            self._bk.clear_stale()
        for m in self.module.modules():
            if hasattr(m, "activations"):
                m.activations = []
            if hasattr(m, "max_batch_len"):
                del m.max_batch_len
        for p in self.module.parameters():
            if hasattr(p, "_current_grad_sample"):
                del p._current_grad_sample
            if hasattr(p, "_forward_counter"):
                p._forward_counter = 0
            p.grad_sample = None

    def remove(self) -> None:
        """Detach everything, leaving a plain module (e.g. before pickling or sampling)."""
        for handle in self._layout:
            handle.remove()
        self._layout = []
        if self._hooks is not None:
            self._hooks.remove_hooks()
            self._hooks = None
        if self._ew is not None:
            self._ew.remove()
            self._ew = None
        if self._bk is not None:
            self._bk.remove()
            self._bk = None
        for p in self.module.parameters():
            for attr in ("grad_sample", "_forward_counter", "_current_grad_sample", "_norm_sample"):
                if hasattr(p, attr):
                    delattr(p, attr)


def fold_rows_per_example(module: nn.Module, examples: int, rows_per_example: int) -> None:
    """Check every ``p.grad_sample`` has examples × K rows; sum each example's K rows into one.

    With the losses summed before backward (``loss_reduction="sum"``), row r of a
    per-sample gradient is ∇ of row r's share of its example's loss, so the sum
    of an example's K rows is exactly ∇ of that example's loss.
    """
    k = rows_per_example
    for name, p in module.named_parameters():
        gs = getattr(p, "grad_sample", None)
        if gs is None or not p.requires_grad:
            continue
        if isinstance(gs, list):  # a layer called more than once per step: accumulate first
            gs = torch.stack(gs).sum(0)
        if gs.shape[0] != examples * k:
            raise RuntimeError(
                f"per-sample gradient of {name!r} has {gs.shape[0]} rows for {examples} per-example "
                f"losses × rows_per_example={k}: clipping would not be per example and ε would be "
                "wrong. Return one loss per example, and if the private module sees several rows "
                "per example pass private_step(losses, rows_per_example=K)"
            )
        p.grad_sample = gs.view(examples, k, *gs.shape[1:]).sum(1) if k > 1 else gs


class _ExpandedWeightsForward:
    """Routes forwards through torch's ``call_for_per_sample_grads`` (ExpandedWeights).

    ``ew`` has no hooks-only form in Opacus (it needs its wrapper's forward).
    Here the *outermost modules that own parameters* get an instance
    ``forward`` that runs the original under ExpandedWeights when training
    with gradients enabled — so per-sample gradients appear however the
    author reaches those layers (``self.net["clf"](x)`` as well as ``self.net(x)``).
    """

    def __init__(self, module: nn.Module) -> None:
        from torch.nn.utils._per_sample_grad import call_for_per_sample_grads

        self._call = call_for_per_sample_grads
        self._inside = False  # shared: nested wrapped calls run their original forward
        self._enabled = True
        self._wrapped: list[nn.Module] = []
        self._wrap(module)

    def _wrap(self, module: nn.Module) -> None:
        if any(p is not None and p.requires_grad for p in module._parameters.values()):
            original = module.forward

            def forward(*args, _module=module, _original=original, **kwargs):
                return self._forward(_module, _original, args, kwargs)

            module.forward = forward  # type: ignore[method-assign]
            self._wrapped.append(module)
            return  # its children's parameters are expanded with it
        for child in module.children():
            self._wrap(child)

    def _forward(self, module: nn.Module, original, args, kwargs):
        if (self._inside or not self._enabled or not module.training
                or not torch.is_grad_enabled()):
            return original(*args, **kwargs)
        batch = args[0].shape[0]
        if batch == 0:  # ExpandedWeights refuses it; the engine handles empty batches
            return original(*args, **kwargs)
        self._inside = True
        try:
            return self._call(module, batch_size=batch, loss_reduction="sum")(*args, **kwargs)
        finally:
            self._inside = False

    @contextmanager
    def disabled(self) -> Iterator[None]:
        self._enabled = False
        try:
            yield
        finally:
            self._enabled = True

    def remove(self) -> None:
        for module in self._wrapped:
            module.__dict__.pop("forward", None)
        self._wrapped = []


def _contiguous_inputs(module: nn.Module, args: tuple) -> tuple:
    return tuple(a.contiguous() if isinstance(a, torch.Tensor) else a for a in args)


def _validate(module: nn.Module) -> None:
    """Refuse layers whose per-sample gradients are not per-sample (BatchNorm)."""
    from opacus.validators import ModuleValidator

    errors = ModuleValidator.validate(module, strict=False)
    if errors:
        raise ValueError(
            "the private module cannot train with DP-SGD as built: "
            + "; ".join(str(e) for e in errors)
            + " (replace BatchNorm by GroupNorm, or call "
            "opacus.validators.ModuleValidator.fix(module) when building it)"
        )


def make_dp_optimizer(
    optimizer: torch.optim.Optimizer,
    *,
    mode: str,
    noise_multiplier: float,
    max_grad_norm: float,
    expected_batch_size: float,
    distributed: bool,
    generator: torch.Generator | None,
    secure_mode: bool,
):
    """The Opacus optimizer for ``mode`` (ghost, bk → FastGradientClipping variant:
    both leave the clipped sum in ``p.grad``; noise and 1/E are Opacus' own).

    ``expected_batch_size`` is the *per-rank* expected batch (global / world
    size): the distributed optimizer sums clipped gradients, adds noise on
    rank 0 only, all-reduces and divides by the world size, so the result is
    (Σ clipped + N(0, σ²C²)) / (q·N) exactly as on one process.
    """
    from opacus.optimizers import get_optimizer_class

    if mode == "auto":
        raise ValueError("make_dp_optimizer needs the mode in use: pass PerSampleGradients(...).mode, "
                         "which resolves 'auto' for the module")
    cls = get_optimizer_class(clipping="flat", distributed=distributed, grad_sample_mode="ghost" if mode == "bk" else mode)
    if mode == "bk":
        cls = _clone_accumulating(cls)
    return cls(
        optimizer,
        noise_multiplier=noise_multiplier,
        max_grad_norm=max_grad_norm,
        expected_batch_size=expected_batch_size,
        loss_reduction="mean",
        generator=generator,
        secure_mode=secure_mode,
    )


_CLONE_ACCUMULATING: dict[type, type] = {}


def _clone_accumulating(cls: type) -> type:
    """``cls`` whose ``accumulate`` copies a gradient with ``clone`` instead of ``copy.deepcopy``.

    Opacus' fast-gradient-clipping optimizer starts each running sum with
    ``copy.deepcopy(p.grad.data)``: the same tensor copy, through Python's deepcopy
    machinery (~50 µs a parameter, 5 ms a step for the diffusion UNet's ~100 tensors,
    10 % of a step at the quickstart's sizes). The values are identical.
    """
    if cls not in _CLONE_ACCUMULATING:
        def accumulate(self) -> None:
            for p in self.params:
                if p.summed_grad is not None:
                    p.summed_grad.add_(p.grad.data)
                else:
                    p.summed_grad = p.grad.data.clone()

        _CLONE_ACCUMULATING[cls] = type(cls.__name__, (cls,), {"accumulate": accumulate,
                                                               "__module__": __name__})
    return _CLONE_ACCUMULATING[cls]
