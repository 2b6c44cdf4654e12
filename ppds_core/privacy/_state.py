"""Where a private training stands: seeds, counters, the privacy record, checkpoint state.

``module.dp`` during and after ``fit_private``. What the accountant needs of
a run is (σ, q, steps done): σ and q are fixed by the schedule, so the step
count *is* the record, and :meth:`DPSGDState.history` is the Opacus-format
history it stands for (what an Opacus accountant stepped once per private step
would hold). ε comes from the schedule (:meth:`DPSGDSchedule.epsilon_at`):
the plan's own ε when the run took its T steps, the accountant's otherwise.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from ..budget import within_budget
from ..errors import BudgetError
from .ledger import Ledger
from .plan import DPSGDSchedule
from .randomness import SEEDED_NOISE_NOTE, derived_seed, mechanism_generator

if TYPE_CHECKING:
    from ._grad_modes import PerSampleGradients

__all__ = ["DPSGDState"]

_derived_seed = derived_seed  # the seeds of what is *not* a privacy mechanism


def _secure_generator() -> Any:
    try:
        import torchcsprng as csprng  # type: ignore[import-not-found]
    except ImportError:
        raise BudgetError(
            "secure_rng: true needs the 'torchcsprng' package (a cryptographically secure "
            "generator for Poisson sampling and noise), which is not installed; install it or "
            "set secure_rng: false"
        ) from None
    return csprng.create_random_device_generator("/dev/urandom")


@dataclass
class DPSGDState:
    """Where a private training stands; ``module.dp`` during and after ``fit_private``."""

    schedule: DPSGDSchedule
    seed: int = 0
    steps_done: int = 0
    optimizer: Any = None  # the Opacus DP optimizer (or the plain one when ε = ∞)
    grads: PerSampleGradients | None = None
    #: the grad-sample mode in use (the plan's, with ``auto`` resolved); None until attached
    grad_sample_mode: str | None = None
    sampler_generator: Any = None
    noise_generator: Any = None
    world_size: int = 1
    rank: int = 0
    progress: Callable[[int, int, dict[str, Any]], None] | None = None
    last_loss: float = math.nan
    stepped_this_batch: bool = False
    pending_checkpoint: dict[str, Any] | None = None
    progress_every: int = 1
    notes: list[str] = field(default_factory=list)
    # the private data, turned into a Poisson loader once the rank is known
    dataset: Any = None
    collate_fn: Any = None
    num_workers: int = 0
    secure_generator: Any = None
    max_physical_batch_size: int | None = None
    #: noise and Poisson batches derived from the (public) seed instead of OS entropy
    reproducible_noise: bool = False
    #: the plan's identity in a periodic checkpoint (``_checkpoint.engine_plan_key``)
    plan_key: str | None = None
    #: the step a resumed run continued from (None: it started fresh)
    resumed_from: int | None = None
    #: the global RNG states of a resumed checkpoint, applied at its first batch
    pending_rng: dict[str, Any] | None = None

    def mechanism_generator(self, *tags: object, device: Any = "cpu") -> Any:
        """The generator of a privacy mechanism (noise, Poisson sampler): OS entropy
        unless the run asked for reproducible noise (ppds_core.privacy.randomness)."""
        return mechanism_generator(self.seed, *tags, reproducible=self.reproducible_noise,
                                   device=device)

    @property
    def total_steps(self) -> int:
        return self.schedule.total_steps

    @property
    def noise_multiplier(self) -> float:
        return self.schedule.noise_multiplier

    @property
    def sample_rate(self) -> float:
        return self.schedule.sample_rate

    @property
    def is_global_zero(self) -> bool:
        return self.rank == 0

    @property
    def finished(self) -> bool:
        return self.steps_done >= self.schedule.total_steps

    def history(self) -> list[tuple[float, float, int]]:
        """The (σ, q, count) history of the DP-SGD steps taken so far (Opacus' format)."""
        sch = self.schedule
        if not sch.private or self.steps_done == 0:
            return []
        return [(float(sch.noise_multiplier), float(sch.sample_rate), int(self.steps_done))]

    def epsilon(self) -> float:
        """ε spent so far (other spends + the DP-SGD steps taken), ∞ if non-private."""
        return self.schedule.epsilon_at(self.steps_done)

    def progress_info(self) -> dict[str, Any]:
        """What a progress report says about privacy so far, honestly labelled.

        The run's own accountant gives ``epsilon`` where that is cheap (RDP,
        memoized per (q, σ); GDP, closed form) and at the last step (the
        plan's ε). Mid-run PRV evaluations cost ~0.1–0.5 s each, so there the
        report carries ``epsilon_rdp_upper`` instead: the RDP accountant's ε,
        an upper bound on the PRV ε of the same steps.
        """
        sch = self.schedule
        info: dict[str, Any] = {"loss": self.last_loss}
        if not sch.private or sch.accountant != "prv" or self.finished:
            info["epsilon"] = self.epsilon()
        else:
            info["epsilon_rdp_upper"] = sch.epsilon_at(self.steps_done, "rdp")
        return info

    def ledger(self) -> Ledger:
        """The ledger of the steps taken so far."""
        sch = self.schedule
        if not sch.private:
            return Ledger(target_epsilon=math.inf, delta=sch.delta, accountant=sch.accountant,
                          epsilon_spent=math.inf, spends=list(sch.other_spends),
                          secure_rng=sch.secure_rng, notes=list(self.notes))
        seeded = self.reproducible_noise and not sch.secure_rng
        notes = [*self.notes, *([SEEDED_NOISE_NOTE] if seeded else [])]
        eps = sch.epsilon_at(self.steps_done)
        if not within_budget(eps, sch.target_epsilon):  # pragma: no cover - T is never exceeded
            raise BudgetError(f"epsilon_spent={eps:.4g} exceeds the target {sch.target_epsilon:g}")
        return Ledger(target_epsilon=sch.target_epsilon, delta=sch.delta,
                      accountant=sch.accountant, epsilon_spent=eps,
                      spends=sch.spends(self.steps_done), secure_rng=sch.secure_rng,
                      reproducible_noise=seeded, notes=notes)

    # -- checkpoint ------------------------------------------------------------------

    def restore_global_rng(self) -> None:
        """At a resumed run's first batch: the global RNG as the uninterrupted run had it.

        Applied at the first batch rather than at load time because Lightning opens the
        data loader's iterator in between, which draws one number from the global RNG
        (its worker base seed); the uninterrupted run drew that number only when a new
        epoch began right after the checkpointed step, so it is drawn again exactly then.
        """
        saved, self.pending_rng = self.pending_rng, None
        if not saved:
            return
        torch.set_rng_state(saved["torch_rng"])
        if "cuda_rng" in saved and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(saved["cuda_rng"])
        if self.steps_done % self.schedule.steps_per_epoch == 0:
            torch.empty((), dtype=torch.int64).random_()

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {
            "schedule": self.schedule.fingerprint(),
            "steps_done": self.steps_done,
            # the accountant's view of the run, as checkpoints have always carried it
            "history": [list(h) for h in self.history()],
            "plan_key": self.plan_key,
            # the global RNG (fake latents, diffusion noise, dropout): not a privacy mechanism, so
            # it is saved, and a resumed run draws what the uninterrupted one would have
            "torch_rng": torch.get_rng_state(),
        }
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            state["cuda_rng"] = torch.cuda.get_rng_state_all()
        # the mechanisms' generator states only when they are seeded anyway: a state drawn
        # from OS entropy, written to disk, would let a reader of the checkpoint predict
        # the noise of the rest of the run (a resumed run draws fresh entropy instead)
        if self.reproducible_noise:
            if isinstance(self.sampler_generator, torch.Generator):
                state["sampler_rng"] = self.sampler_generator.get_state()
            if isinstance(self.noise_generator, torch.Generator):
                state["noise_rng"] = self.noise_generator.get_state()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        mine, theirs = self.schedule.fingerprint(), state.get("schedule", {})
        if mine != theirs:
            diff = {k: (theirs.get(k), v) for k, v in mine.items() if theirs.get(k) != v}
            raise BudgetError(
                "the checkpoint was trained under a different DP-SGD schedule "
                + ", ".join(f"{k}: {a!r} (checkpoint) vs {b!r} (now)" for k, (a, b) in diff.items())
                + "; resume with the same config, or start a fresh run"
            )
        self.steps_done = int(state["steps_done"])
        self._check_history(state.get("history", []))
        self.resumed_from = self.steps_done
        if "torch_rng" in state and self.world_size == 1:
            self.pending_rng = {k: state[k] for k in ("torch_rng", "cuda_rng") if k in state}
        if not self.reproducible_noise:
            return
        if isinstance(self.sampler_generator, torch.Generator) and self.world_size > 1:
            # rank 0's sampler state is the one saved: each rank must keep its own stream
            # (shared ones would correlate inclusions across shards), so derive one per rank
            self.sampler_generator.manual_seed(
                derived_seed(self.seed, "poisson", self.rank, self.world_size, "resumed",
                             self.steps_done))
        elif "sampler_rng" in state and isinstance(self.sampler_generator, torch.Generator):
            self.sampler_generator.set_state(state["sampler_rng"])
        if "noise_rng" in state and isinstance(self.noise_generator, torch.Generator):
            self.noise_generator.set_state(state["noise_rng"])

    def _check_history(self, saved: list) -> None:
        """A checkpoint's history must be its step count at the schedule's (σ, q)."""
        if not self.schedule.private:
            return
        sch = self.schedule
        counted = sum(int(t) for _, _, t in saved)
        if counted != self.steps_done or any(
                (float(s), float(q)) != (sch.noise_multiplier, sch.sample_rate) for s, q, _ in saved):
            raise BudgetError(
                f"the checkpoint's accountant history {saved!r} does not match its "
                f"{self.steps_done} steps at σ={sch.noise_multiplier:g}, q={sch.sample_rate:g}; "
                "the file is damaged: start a fresh run"
            )
