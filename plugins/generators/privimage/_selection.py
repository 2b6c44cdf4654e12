"""Turning the noisy histogram into a relabelled public training set (post-processing).

Private classes are served in order; each takes its ``per_class`` highest
noisy public classes that no earlier private class took, so no public image
carries two labels (DPImageBench's procedure, ``order="class"``). With more
than one class each, that order cascades: on ``mnist5k`` digit 0 takes "O" and
then "2", so 2 takes "3", 3 takes "5" … ``order="round-robin"`` instead lets
every private class take its best free public class before any takes a
second. The selected public images are relabelled with the private class and
become the pretraining set.
"""

from __future__ import annotations

import torch

from ppds_core import ConfigError, ImageSet

__all__ = ["select_public_classes", "classes_per_private", "relabelled_public"]


def classes_per_private(selection_ratio: float, num_public: int, num_private: int,
                        override: int | None) -> int:
    """Public classes per private class: ``override``, else ratio × public classes,
    shared among the private classes (at least one)."""
    n = override if override is not None else max(1, round(selection_ratio * num_public / num_private))
    if n * num_private > num_public:
        raise ConfigError(
            f"privimage.config: {n} public classes for each of {num_private} private classes needs "
            f"{n * num_private} distinct public classes but the public set has {num_public}; "
            "lower selection_ratio or classes_per_private_class"
        )
    return n


def select_public_classes(noisy: torch.Tensor, per_class: int, order: str = "class") -> list[list[int]]:
    """For each private class (row), its ``per_class`` top public classes, skipping taken ones.

    ``order="class"``: row 0 takes all of its classes, then row 1, …;
    ``order="round-robin"``: every row takes one class per round, in row order.
    """
    if order not in ("class", "round-robin"):
        raise ValueError(f"selection order {order!r}: use 'class' or 'round-robin'")
    ranked = [torch.argsort(row, descending=True, stable=True).tolist() for row in noisy]
    taken: set[int] = set()
    selected: list[list[int]] = [[] for _ in ranked]
    rounds, takes = (per_class, 1) if order == "round-robin" else (1, per_class)
    for _ in range(rounds):
        for mine, ranking in zip(selected, ranked, strict=True):
            for _ in range(takes):
                j = next((j for j in ranking if j not in taken), None)
                if j is None:
                    break
                mine.append(j)
                taken.add(j)
    return selected


def relabelled_public(public: ImageSet, selected: list[list[int]], private_names: list[str]) -> ImageSet:
    """The public images of the selected classes, labelled with their private class."""
    idx, labels = [], []
    for priv, pubs in enumerate(selected):
        for j in pubs:
            where = torch.nonzero(public.labels == j).flatten()
            idx.append(where)
            labels.append(torch.full((where.numel(),), priv, dtype=torch.long))
    if not idx or sum(i.numel() for i in idx) == 0:
        raise ConfigError("privimage: the selected public classes hold no images; check the public set")
    index = torch.cat(idx)
    return ImageSet(public.images[index], torch.cat(labels), private_names, f"{public.name}/selected")
