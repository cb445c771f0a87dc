"""Baselines for ``spikeff-bench``: BPTT with snntorch (:mod:`.bptt`), Forward-Forward (:mod:`.ff`)
and logistic regression on the raw event counts (:mod:`.linear`).

Each trains on a loader of time-first batches and reports accuracy and
:class:`spikeff.energy.OpCounts` per inference on another.
"""

from .bptt import BPTTConfig, SnnTorchNet, select_bptt, train_bptt
from .ff import FFConfig, FFNet, train_ff
from .linear import train_linear

__all__ = ["BPTTConfig", "SnnTorchNet", "select_bptt", "train_bptt", "FFConfig", "FFNet", "train_ff", "train_linear"]
