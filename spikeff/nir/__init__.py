"""NIR export and import of the deterministic :class:`~spikeff.network.SpikingNet`.

spikeff writes its network with the noise off as a `NIR <https://neuroir.org>`_ graph,
reads such graphs back, quantises for Loihi 2, and checks an export spike for spike in
spikeff, snntorch and norse. See ``docs/nir.md``.

Modules:

- :mod:`~spikeff.nir.export`: :func:`to_nir_graph`, :func:`export_nir` (atomic writing);
  its docstring gives the graph layout and the LIF discretisation.
- :mod:`~spikeff.nir.load`: :func:`from_nir`.
- :mod:`~spikeff.nir.rewrite`: :func:`retime`, :func:`fold_r` (graph to graph).
- :mod:`~spikeff.nir.verify`: :func:`reference_outputs`, :func:`verify_nir`; the only
  module that imports snntorch or norse, inside the functions that need them.
- :mod:`~spikeff.nir.loihi`: :func:`quantize_loihi`, :class:`LoihiQuantization`, the
  ``LOIHI_*`` ranges.
- :mod:`~spikeff.nir._common`: the errors and helpers the others share.

The ``spikeff export`` command is in :mod:`spikeff.cli`.
"""

from ._common import SUPPORTED_IMPORT, NIRExportError, NIRImportError, check_dt, check_target
from .export import export_nir, to_nir_graph
from .load import from_nir
from .loihi import (
    LOIHI_BIAS_MAX,
    LOIHI_DECAY_SCALE,
    LOIHI_THRESHOLD_MAX,
    LOIHI_WEIGHT_BITS,
    LoihiQuantization,
    quantize_loihi,
)
from .rewrite import fold_r, retime
from .verify import SNNTORCH_DT, reference_outputs, verify_nir

__all__ = [
    "NIRExportError",
    "NIRImportError",
    "LoihiQuantization",
    "to_nir_graph",
    "export_nir",
    "from_nir",
    "quantize_loihi",
    "verify_nir",
    "reference_outputs",
    "retime",
    "fold_r",
    "check_dt",
    "check_target",
    "SUPPORTED_IMPORT",
    "SNNTORCH_DT",
    "LOIHI_WEIGHT_BITS",
    "LOIHI_DECAY_SCALE",
    "LOIHI_THRESHOLD_MAX",
    "LOIHI_BIAS_MAX",
]
