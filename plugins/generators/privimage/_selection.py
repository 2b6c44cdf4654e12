"""Turning the noisy histogram into a relabelled public training set (post-processing).

Private classes are served in order; each takes its ``per_class`` highest
noisy public classes that no earlier private class took, so no public image
carries two labels. The selected public images are relabelled with the
private class and become the pretraining set.
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


def select_public_classes(noisy: torch.Tensor, per_class: int) -> list[list[int]]:
    """For each private class (row), its ``per_class`` top public classes, skipping taken ones."""
    taken: set[int] = set()
    selected: list[list[int]] = []
    for row in noisy:
        mine: list[int] = []
        for j in torch.argsort(row, descending=True, stable=True).tolist():
            if j in taken:
                continue
            mine.append(j)
            taken.add(j)
            if len(mine) == per_class:
                break
        selected.append(mine)
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
