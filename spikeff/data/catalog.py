"""The dataset catalog: every dataset by name, and where file datasets live by default."""

from __future__ import annotations

import os
from pathlib import Path
from types import MappingProxyType

from . import digits, dvsgesture, fashion, nmnist
from .errors import DataError
from .model import DatasetSpec

DATASETS: MappingProxyType[str, DatasetSpec] = MappingProxyType(
    {spec.name: spec for spec in (digits.SPEC, nmnist.SPEC, dvsgesture.SPEC, fashion.SPEC)}
)


def get_spec(name: str) -> DatasetSpec:
    """The catalog entry for a dataset.

    Parameters
    ----------
    name : str
        ``"digits"``, ``"nmnist"``, ``"dvsgesture"`` or ``"fashion"`` (any case).

    Returns
    -------
    DatasetSpec

    Raises
    ------
    DataError
        For a name not in :data:`DATASETS`.
    """
    try:
        return DATASETS[name.lower()]
    except KeyError:
        raise DataError(f"unknown dataset {name!r}; choose one of {sorted(DATASETS)}") from None


def default_data_dir() -> Path:
    """The default ``data_dir``.

    Returns
    -------
    Path
        ``$SPIKEFF_DATA`` if set, else ``./data`` (tonic's usual ``save_to``).
    """
    return Path(os.environ.get("SPIKEFF_DATA", "data")).expanduser()
