"""Finding the standard FID Inception weights on this machine, and feeding images to them.

"FID" means one network: the TensorFlow Inception graph of 2015-12-05 as
converted by torch-fidelity (``weights-inception-2015-12-05-6726825d.pth``)
or by pytorch-fid (``pt_inception-2015-12-05-6726825d.pth``); both files hold
the same 566 tensors under the same names, and torchmetrics'
``NoTrainInceptionV3`` loads either. Any other network gives a different
number, so when neither file is here we skip (naming where we looked and how
to get it) instead of substituting something.

Weights files come from the internet, so they are never unpickled: ppds reads
the state dict itself with ``weights_only=True`` (tensors only; anything else
is refused with one line naming the file, before any of it runs) and hands
torch-fidelity those tensors re-serialised in memory, never the file's path
(torch-fidelity would ``torch.load(path, weights_only=False)`` it).
"""

from __future__ import annotations

import io
from pathlib import Path

import torch
from ppds_plugins.common.hub import find_weights
from ppds_plugins.common.pixels import to_uint8

from ppds_core import SkipMeasurement, WeightsNotFoundError
from ppds_core.errors import UnsafeFileError
from ppds_core.safe_load import load_tensors

__all__ = [
    "WEIGHTS_ENV",
    "INCEPTION_FILES",
    "INCEPTION_URL",
    "weights_id",
    "find_inception_weights",
    "load_inception_state",
    "inception_extractor",
    "to_inception_input",
]

#: environment variable naming a local Inception weights file
WEIGHTS_ENV = "PPDS_FID_WEIGHTS"
#: file names torch-fidelity and pytorch-fid store in the torch hub cache
INCEPTION_FILES = (
    "weights-inception-2015-12-05-6726825d.pth",
    "pt_inception-2015-12-05-6726825d.pth",
)
#: torch-fidelity's release asset (what torchmetrics downloads when allowed)
INCEPTION_URL = "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/weights-inception-2015-12-05-6726825d.pth"

_EXTRACTORS: dict[str, torch.nn.Module] = {}


def weights_id(path: Path) -> str:
    """The weights file's identity in cache keys: its name and size (hashing 100 MB per cell is slow)."""
    return f"{path.name}:{path.stat().st_size}"


def find_inception_weights(configured: str | Path | None = None, download: bool = False) -> Path:
    """The local Inception weights file, or SkipMeasurement explaining how to get it.

    Order: the ``weights`` option, then ``$PPDS_FID_WEIGHTS``, then the torch
    hub cache (:func:`ppds_plugins.common.hub.find_weights`).
    """
    return find_weights(what="Inception weights for FID", url=INCEPTION_URL, filenames=INCEPTION_FILES,
                        option="fid.config.weights", configured=configured, env=WEIGHTS_ENV,
                        download=download)


def load_inception_state(weights: str | Path) -> dict[str, torch.Tensor]:
    """The file's state dict, read without unpickling code; refused in one line otherwise."""
    state = load_tensors(weights, "FID Inception weights file")
    if not isinstance(state, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise UnsafeFileError(
            f"{weights}: not a state dict of named tensors, so not the FID Inception weights; "
            f"use {INCEPTION_FILES[0]} ({INCEPTION_URL})"
        )
    return state


def inception_extractor(weights: Path, antialias: bool = True) -> torch.nn.Module:
    """torchmetrics' ``NoTrainInceptionV3`` (2048-d pool features) from a local file, memoised.

    torch-fidelity's constructor loads whatever it is given with
    ``weights_only=False``; it is given an in-memory copy of the tensors
    :func:`load_inception_state` accepted, so nothing from the file is unpickled.
    """
    key = f"{Path(weights).resolve()}|{antialias}"
    if key not in _EXTRACTORS:
        try:
            from torchmetrics.image.fid import NoTrainInceptionV3
        except ImportError as err:  # pragma: no cover - depends on the environment
            raise SkipMeasurement(
                f"FID needs torch-fidelity (pip install torch-fidelity): {err}"
            ) from None
        tensors = io.BytesIO()
        torch.save(load_inception_state(weights), tensors)
        tensors.seek(0)
        try:
            extractor = NoTrainInceptionV3(
                name="inception-v3-compat",
                features_list=["2048"],
                feature_extractor_weights_path=tensors,  # type: ignore[arg-type]
                antialias=antialias,
            )
        except RuntimeError as err:  # load_state_dict: missing / unexpected / mis-shaped tensors
            raise WeightsNotFoundError(
                f"{weights} is not the FID Inception network ({str(err).splitlines()[0]}); "
                f"use {INCEPTION_FILES[0]} ({INCEPTION_URL})"
            ) from None
        _EXTRACTORS[key] = extractor
    return _EXTRACTORS[key]


def to_inception_input(images: torch.Tensor) -> torch.Tensor:
    """Canonical [0, 1] N×C×H×W → uint8 N×3×H×W, the input torchmetrics' Inception expects.

    Grayscale is repeated to three channels; the extractor itself resizes to
    299×299 (bilinear) and rescales to its own input range.
    """
    if images.shape[1] == 1:
        images = images.repeat(1, 3, 1, 1)
    elif images.shape[1] != 3:
        raise ValueError(f"Inception takes 1- or 3-channel images, got {images.shape[1]} channels")
    return to_uint8(images)
