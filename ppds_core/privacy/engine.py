"""DP-SGD on PyTorch Lightning + Opacus: the one engine every private generator trains with.

A generator says *which module* trains privately, *with which optimizer*,
*on which private data*, at *which batch size and length*, under *which
budget* (and which spends were already made); the engine does the rest —
Poisson sampling, per-sample clipping, calibrated Gaussian noise, the
accountant, the exact step count, checkpoints, DDP — and returns the
:class:`~ppds_core.privacy.ledger.Ledger`.

Usage (a generator's ``fit``)::

    from ppds_core.privacy.engine import DPSGDModule, DPSGDPlan, fit_private, public_copy

    class Disc(DPSGDModule):                     # a LightningModule, manual optimisation
        def __init__(self):
            super().__init__()
            self.net, self.gen = make_discriminator(), make_generator()
        def private_module(self):                # ONE nn.Module (group several in a ModuleDict)
            return self.net
        def configure_private_optimizer(self):   # over private_module()'s parameters only
            return torch.optim.Adam(self.net.parameters(), lr=2e-4)
        def configure_public_optimizers(self):   # optional: steps that touch no private data
            return [torch.optim.Adam(self.gen.parameters(), lr=2e-4)]
        def training_step(self, batch, batch_idx):
            x, y = batch                         # one Poisson batch (size varies, may be 0)
            losses = per_example_loss(self.net, x, y)   # shape (B,): loss_i depends on example i only
            self.private_step(losses)            # clip → sum → noise → /E → step → count
            if self.dp.steps_done % 5 == 0:      # post-processing: free
                d = public_copy(self.net)
                self.public_step(self.optimizers()[1].optimizer, gen_loss(self.gen, d))

    plan = DPSGDPlan(budget=budget, batch_size=cfg.batch_size, epochs=cfg.epochs,
                     max_grad_norm=cfg.max_grad_norm, other_spends=(query_spend,))
    ledger = fit_private(Disc(), private_imageset, plan, ctx)   # ctx: FitContext (seed, trainer, …)

Contract:

- ``private_step(per_sample_losses)`` is called at most once per batch; row
  *i* must depend on batch example *i* only, and so must the per-sample
  gradient the private module holds for it. Sensitivity is then one example
  and clipping bounds it by C. A module that runs K rows per example through
  the network (DPDM's noise multiplicity) passes ``rows_per_example=K``; the
  engine sums each example's K row gradients before clipping and refuses any
  per-sample gradient whose row count is not examples × K (docs/dp-sgd-engine.md).
- Poisson sampling with q = batch_size / N (refused if batch_size > N); an
  epoch is ⌈N / batch_size⌉ steps; T = epochs · ⌈N/B⌉ or ``steps``. Training
  stops after exactly T private steps (Lightning's epochs are not trusted
  for this); ``self.dp`` tells the module where it stands.
- σ is calibrated with :func:`~ppds_core.privacy.accounting.calibrate_noise_multiplier`
  so that the DP-SGD run composed with ``other_spends`` meets (ε, δ), unless
  ``noise_multiplier`` is fixed (then the plan is refused if it overspends).
  Calibration returns (σ, ε) once and the plan keeps that ε; the run records
  (σ, q, steps done), which is all an accountant needs. ``epsilon_spent`` on
  the ledger is the plan's ε when the run took its T steps, else
  :func:`~ppds_core.privacy.accounting.epsilon_of` of the spends so far; it
  never exceeds the target.
- ε = ∞: the identical recipe (same Poisson sampler, same seed ⇒ same
  batches, same optimizer) without clipping or noise: the gradient is the
  sum of the unclipped per-sample gradients over the (global) batch divided
  by the expected batch size q·N, as in the private step. The ledger has
  target ∞, ε_spent ∞ and no DP-SGD spend.
- Grad-sample modes (``grad_sample_mode``): ``auto`` (default: ``bk`` where it
  runs, else ``hooks``; logged, and kept in ``module.dp.grad_sample_mode``),
  ``hooks``, ``functorch``, ``ghost`` (ghost clipping: two backward passes, no
  per-sample gradients materialised), ``ew`` (ExpandedWeights) and ``bk``
  (book-keeping: one backward, per-layer ghost or instantiated norms, clipped
  sums; ``_bookkeeping.py``). All attach to the module in place.
- Checkpoints (``ckpt_path=`` to resume) carry the step count (and the
  (σ, q, T) history it stands for) and the RNG states that are not a privacy
  mechanism's (and, with ``reproducible_noise`` only, the sampler's and the
  noise's); a resumed run continues the ledger. With ``ctx.checkpoint_dir`` the
  engine writes one there every ``ctx.checkpoint_every`` private steps and
  resumes it in the next ``fit_private`` of the same plan; SIGTERM/SIGUSR1
  checkpoint and stop the fit (``FitInterrupted``) — ``_checkpoint.py``,
  :mod:`ppds_core.privacy.checkpoint`.
- ``ctx.trainer`` is passed to Lightning (accelerator, devices, strategy,
  num_nodes, precision, …); CPU and quiet by default. ``strategy: ddp``
  runs Opacus' DistributedDPOptimizer (noise once, on rank 0) over a
  Poisson sampler sharded by rank, with the global sample rate.
- Whatever cannot be honoured raises :class:`~ppds_core.errors.BudgetError`
  (or :class:`~ppds_core.errors.ConfigError` for a bad option) before any training.

Layout (this module is the stable import path; the pieces live by concern):

- :mod:`~ppds_core.privacy.plan` — :class:`DPSGDPlan`, :class:`DPSGDSchedule`,
  :func:`plan_dp_sgd`, σ and ε calibrated once (no torch, no Lightning);
- :mod:`~ppds_core.privacy._state` — :class:`DPSGDState`: seeds, the step
  count, progress, the ledger, checkpoint state;
- :mod:`~ppds_core.privacy._module` — :class:`DPSGDModule` and its optimizer
  attachment (per-sample gradients + the Opacus DP optimizer);
- :mod:`~ppds_core.privacy._fit` — :func:`fit_private`, the Lightning callback,
  data coercion, :func:`public_copy`;
- :mod:`~ppds_core.privacy._checkpoint` — periodic checkpoints into
  ``ctx.checkpoint_dir`` and finding one of the same plan to resume;
- ``_grad_modes`` / ``_bookkeeping`` (per-sample gradients), ``_poisson`` (the
  sampler), ``_opacus_lightning`` (trainer and DDP strategy).

Full documentation: ``docs/dp-sgd-engine.md``.
"""

from __future__ import annotations

from ._fit import fit_private, public_copy
from ._grad_modes import PerSampleGradients, make_dp_optimizer
from ._module import DPSGDModule
from ._opacus_lightning import DPDDPStrategy
from ._poisson import PoissonDataLoader
from ._state import DPSGDState
from .plan import GRAD_SAMPLE_MODES, DPSGDPlan, DPSGDSchedule, Spend, plan_dp_sgd

# internals that lived in this module before the split, for code that reached for them
from ._fit import _as_dataset, _DPSGDCallback, _quiet_lightning  # noqa: F401  # isort: skip
from ._module import _attach, _sum_over_expected_batch  # noqa: F401  # isort: skip
from ._state import _derived_seed, _secure_generator  # noqa: F401  # isort: skip

__all__ = [
    "GRAD_SAMPLE_MODES",
    "DPSGDPlan",
    "DPSGDSchedule",
    "DPSGDModule",
    "DPSGDState",
    "plan_dp_sgd",
    "fit_private",
    "public_copy",
    "DPDDPStrategy",
    # the low-level pieces, for code that takes single privatized steps (audits, benchmarks)
    "PerSampleGradients",
    "make_dp_optimizer",
    "PoissonDataLoader",
    "Spend",
]
