"""The ``privimage`` generator: DP-diffusion preceded by a semantic query on public data.

Steps (PrivImage / DP-ImaGen, DPImageBench): (1) a classifier of the public
labels is the semantic query function; (2) each private image votes for its
top-k public classes in a [private × public] histogram, released with
Gaussian noise σ_q·√k (a ledger spend); (3) each private class takes its top
noisy public classes not taken yet, whose images are relabelled with it;
(4) the diffusion model pretrains on them without DP; (5) DP-SGD fine-tunes it
on the private data. The DP-SGD noise is calibrated so that the query and
DP-SGD *together* meet the target ε.
"""

from __future__ import annotations

from typing import ClassVar

from ppds_plugins.common.classifiers import predict_logits
from ppds_plugins.common.devices import device_of
from ppds_plugins.common.diffusion.objective import NoiseMultiplicityDDPMLoss
from ppds_plugins.common.diffusion.unet import to_model_space
from ppds_plugins.generators.dp_diffusion import DiffusionGenerator

from ppds_core import ConfigError, FitContext, ImageSet, PrivacyBudget
from ppds_core.privacy.checkpoint import StageCheckpoints, data_fingerprint, plan_key
from ppds_core.privacy.ledger import GaussianSpend
from ppds_core.privacy.randomness import mechanism_generator

from ._config import PrivImageConfig
from ._pretrain import pretrain
from ._selection import classes_per_private, relabelled_public, select_public_classes
from ._semantic_query import (
    auto_query_sigma,
    match_public_to_private,
    noisy_histogram,
    query_spend,
    topk_histogram,
    train_query_classifier,
)

__all__ = ["PrivImage"]


class PrivImage(DiffusionGenerator):
    """PrivImage: semantic query + selection on public data, pretraining, DP fine-tuning."""

    name: ClassVar[str] = "privimage"
    Config: ClassVar[type[PrivImageConfig]] = PrivImageConfig
    uses_public_data: ClassVar[bool] = True
    description: ClassVar[str] = (
        "PrivImage: a DP semantic query picks the public classes that look like each private "
        "class; the diffusion model pretrains on them, then fine-tunes with DP-SGD "
        "(noise multiplicity, EMA)."
    )

    @classmethod
    def smoke_config(cls, config: PrivImageConfig) -> PrivImageConfig:
        base = super().smoke_config(config)
        return base.model_copy(update={"query_epochs": 1, "pretrain_epochs": min(config.pretrain_epochs, 1)})

    def _prepare(self, objective: NoiseMultiplicityDDPMLoss, private: ImageSet,
                 budget: PrivacyBudget, ctx: FitContext) -> tuple[GaussianSpend, ...]:
        cfg = self.config
        if ctx.public is None or len(ctx.public) == 0:
            raise ConfigError(
                f"privimage needs public data but the dataset {private.name!r} has none: set "
                "`public:` on the dataset in the matrix config (e.g. `public: glyphs` for digits, "
                "`public: imagenet-folder` for CIFAR-10)"
            )
        device = device_of(ctx)
        public = match_public_to_private(ctx.public, private.shape)
        per_class = classes_per_private(cfg.selection_ratio, public.num_classes,
                                        private.num_classes, cfg.classes_per_private_class)
        stages = StageCheckpoints(ctx.checkpoint_dir, plan_key(
            "privimage", cfg, data_fingerprint(private.images, private.labels),
            data_fingerprint(public.images, public.labels), budget.epsilon, budget.delta, ctx.seed,
            ctx.reproducible_noise, ctx.accountant), ctx.checkpoint_every)
        noisy, sigma, spends = self._semantic_query(public, private, budget, ctx, stages)
        # the DP-SGD checkpoint is resumed only after this very query
        self._resume_key = data_fingerprint(noisy)
        # (3) selection and relabelling (post-processing)
        selected = select_public_classes(noisy, per_class, cfg.selection_order)
        chosen = relabelled_public(public, selected, private.class_names)
        self.train_info["selection"] = {
            private.class_names[i]: [public.class_names[j] for j in js] for i, js in enumerate(selected)
        }
        rule = ("no noise (ε = ∞)" if not budget.is_private else "fixed" if cfg.query_sigma != "auto"
                else f"auto: {cfg.query_budget_share:g} of the budget's μ²")
        self.train_info["query"] = {"sigma": sigma, "sigma_rule": rule, "augment": cfg.query_augment,
                                    "topk": cfg.query_topk, "classes_per_private_class": per_class,
                                    "selection_order": cfg.selection_order,
                                    "public_images_selected": len(chosen)}
        # (4) non-private pretraining on the relabelled public images (saved: a resumed fit
        # skips it; the DP-SGD checkpoint, if any, then replaces these weights anyway)
        saved = stages.load("privimage_pretrained") if cfg.pretrain_epochs > 0 else None
        if saved is not None and saved.get("query") == self._resume_key:  # after this very query
            objective.unet.load_state_dict(saved["unet"])
            self.train_info["pretrain_loss"] = [float(v) for v in saved["losses"]]
        elif cfg.pretrain_epochs > 0:
            x = to_model_space(chosen.images, self.side, cfg.image_size)
            losses = pretrain(objective, x, chosen.labels, epochs=cfg.pretrain_epochs,
                              batch_size=cfg.pretrain_batch_size, lr=cfg.pretrain_lr,
                              label_dropout=cfg.label_dropout, seed=ctx.seed, device=device)
            self.train_info["pretrain_loss"] = losses
            stages.save("privimage_pretrained", {"unet": objective.unet.state_dict(), "losses": losses,
                                                 "query": self._resume_key})
        return spends

    def _semantic_query(self, public: ImageSet, private: ImageSet, budget: PrivacyBudget,
                        ctx: FitContext, stages: StageCheckpoints):
        """(1)–(2): the noisy [private × public] histogram, its σ_q and spend.

        The release is saved to the checkpoint folder right after it is drawn, and a
        resumed fit of the same plan reuses it instead of drawing it again (a second
        draw would be a second spend); the ledger carries it once either way.
        """
        cfg = self.config
        sigma = 0.0
        if budget.is_private:
            sigma = (auto_query_sigma(budget, cfg.query_budget_share) if cfg.query_sigma == "auto"
                     else float(cfg.query_sigma))
        spends = (query_spend(sigma, cfg.query_topk),) if budget.is_private else ()
        saved = stages.load("privimage_query")
        if saved is not None and float(saved["sigma"]) == sigma:
            self.train_info["query_reused"] = True
            return saved["noisy"], sigma, spends
        device = device_of(ctx)
        # (1) the semantic query function sees only public data
        classifier = train_query_classifier(public, cfg.query_epochs, ctx.seed, device, cfg.query_augment)
        logits = predict_logits(classifier, private.images, device=device)
        # (2) histogram of top-k votes + Gaussian noise: the only private-data release here
        hist = topk_histogram(logits, private.labels, private.num_classes, cfg.query_topk)
        if budget.is_private:
            # a privacy mechanism: OS entropy unless the run asked for reproducible noise
            noise = mechanism_generator(ctx.seed, "privimage-query",
                                        reproducible=ctx.reproducible_noise)
            noisy = noisy_histogram(hist, sigma, cfg.query_topk, noise)
        else:
            noisy = hist  # the non-private reference: the same recipe without noise
        stages.save("privimage_query", {"noisy": noisy, "sigma": sigma})
        return noisy, sigma, spends
