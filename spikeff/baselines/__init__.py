"""Baselines for ``spikeff-bench``: BPTT with snntorch (:mod:`.bptt`) and Forward-Forward (:mod:`.ff`).

Both build the layer shapes of a :class:`spikeff.network.NetworkConfig`, train with one loop
each, and report accuracy and :class:`spikeff.energy.OpCounts` on a loader of time-first batches.
"""

from .bptt import BPTTConfig, SnnTorchNet, train_bptt
from .ff import FFConfig, FFNet, train_ff

__all__ = ["BPTTConfig", "SnnTorchNet", "train_bptt", "FFConfig", "FFNet", "train_ff"]
