"""Where pretrained weights come from: a configured path, an environment variable, the torch hub cache.

Shared by the Inception (FID) and LPIPS loaders, so both follow one lookup
order and one pair of outcomes: an explicitly named file that does not exist
is the user's mistake (:class:`~ppds_core.WeightsNotFoundError`, one line
with the fix); no file anywhere means "not measurable here"
(:class:`~ppds_core.SkipMeasurement`, naming every place looked at), unless
``download`` opts in to fetching the bytes into the hub cache. Nothing is
ever fetched otherwise: ppds runs offline.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import torch

from ppds_core import SkipMeasurement, WeightsNotFoundError

__all__ = ["find_weights", "hub_checkpoint_dir"]


def hub_checkpoint_dir() -> Path:
    """``$TORCH_HOME/hub/checkpoints``: where torch-fidelity and torchvision cache weights."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def find_weights(
    *,
    what: str,
    url: str,
    filenames: Sequence[str],
    option: str,
    configured: str | Path | None,
    env: str,
    download: bool = False,
) -> Path:
    """The local weights file for ``what``.

    Looks at ``configured`` (the plugin option named ``option``), then ``$env``,
    then ``filenames`` in the hub cache; ``filenames[0]`` is the name a download
    is saved under.
    """
    for source, value in ((option, configured), (f"${env}", os.environ.get(env))):
        if value:
            path = Path(value).expanduser()
            if not path.is_file():
                raise WeightsNotFoundError(
                    f"{source} names {path}, which is not a file; point it at {filenames[0]} "
                    f"(download: {url})"
                )
            return path
    hub = hub_checkpoint_dir()
    looked = [hub / name for name in filenames]
    for path in looked:
        if path.is_file():
            return path
    if download:  # only the bytes: load_state_dict_from_url would unpickle them unrestricted
        hub.mkdir(parents=True, exist_ok=True)
        torch.hub.download_url_to_file(url, str(looked[0]), progress=False)
        return looked[0]
    raise SkipMeasurement(
        f"{what} not found (looked at {', '.join(str(p) for p in looked)}); download {url} into "
        f"{hub}, or set ${env} / the option `{option.rsplit('.', 1)[-1]}` to a local copy, or set "
        "`download: true` to let ppds fetch it"
    )
