"""What a training run records: per-layer statistics, epoch records, the pass cursor, diagnostics.

:class:`~spikeff.trainer.LayerTrainer` keeps one :class:`LayerStats` per layer and batch, their
means per epoch in an :class:`EpochRecord`, and where it stands in a :class:`PassCursor` (saved
in run states for resuming mid-pass). Diagnostics such as :func:`warn_if_silent` read the
records after every epoch.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["SILENT_RATE", "SILENT_SPIKES", "LayerStats", "EpochRecord", "PassCursor", "Diagnostic", "warn_if_silent",
           "warn_if_head_silent"]

# A layer counts as nearly silent below both: a sparse but large layer still carries signal
# (64/128 channels on the digits: 0.4 % of 8192 neurons, ~33 spikes per bin, the best run seen).
SILENT_RATE = 0.005  # spikes per neuron and time bin
SILENT_SPIKES = 5.0  # spikes per input and time bin, summed over the layer


@dataclass(frozen=True)
class LayerStats:
    """One layer's training statistics: on one batch (0-d tensors), or their means over a pass.

    ``objective`` holds the statistics the layer's objective names (:mod:`spikeff.objectives`), e.g.
    ``ed_consistency`` and ``ed_diversity``; they read as attributes too (``stats.ed_consistency``).
    """

    loss: Any
    rate: Any  # spikes per neuron and time bin
    spikes_per_bin: Any  # spikes per input and time bin, summed over the layer
    objective: Mapping[str, Any] = field(default_factory=dict)

    def __getattr__(self, name: str) -> Any:
        stats = self.__dict__.get("objective", {})
        if name in stats:
            return stats[name]
        raise AttributeError(f"{type(self).__name__} has no statistic {name!r}")

    @classmethod
    def of(cls, flat: Mapping[str, Any], k: int) -> LayerStats:
        """Layer ``k``'s (1-based) entries of a flat record (keys ``layer<k>/<name>``).

        Parameters
        ----------
        flat : e.g. :meth:`EpochRecord.to_dict`'s output.
        k : the layer, 1-based.

        Returns
        -------
        LayerStats of floats; every entry but ``loss``, ``rate`` and ``spikes_per_bin`` is the objective's.

        Raises
        ------
        KeyError : ``loss``, ``rate`` or ``spikes_per_bin`` is missing.
        """
        prefix = f"layer{k}/"
        mine = {key[len(prefix):]: float(v) for key, v in flat.items() if key.startswith(prefix)}
        base = [mine.pop(name) if name in mine else flat[prefix + name] for name in _BASE]
        return cls(*base, objective=mine)

    def items(self, k: int) -> dict[str, Any]:
        """The flat record entries of layer ``k`` (1-based): ``loss``, the objective's, ``rate``, ``spikes_per_bin``.

        Parameters
        ----------
        k : the layer, 1-based.

        Returns
        -------
        dict : ``layer<k>/<name>`` -> value.
        """
        named = {"loss": self.loss, **self.objective, "rate": self.rate, "spikes_per_bin": self.spikes_per_bin}
        return {f"layer{k}/{name}": v for name, v in named.items()}


_BASE = ("loss", "rate", "spikes_per_bin")


@dataclass(frozen=True)
class EpochRecord:
    """One epoch of :class:`LayerTrainer`: each layer's mean :class:`LayerStats` and the head's mean loss.

    Files (``metrics.json``, run states, bench results) hold its flat form, :meth:`to_dict`:
    ``epoch``, ``seconds``, ``layer<k>/<field>`` (``k`` 1-based) and ``head/loss``.
    """

    epoch: int
    seconds: float
    layers: tuple[LayerStats, ...]
    head_loss: float

    def to_dict(self) -> dict[str, Any]:
        """The flat form, in plain types.

        Returns
        -------
        dict
        """
        flat: dict[str, Any] = {"epoch": self.epoch, "seconds": self.seconds}
        for k, stats in enumerate(self.layers, 1):
            flat.update(stats.items(k))
        return {**flat, "head/loss": self.head_loss}

    @classmethod
    def from_dict(cls, flat: Mapping[str, Any]) -> EpochRecord:
        """Read :meth:`to_dict`'s output back.

        Parameters
        ----------
        flat : the flat form.

        Returns
        -------
        EpochRecord

        Raises
        ------
        KeyError : a layer lacks ``loss``, ``rate`` or ``spikes_per_bin``, or ``epoch`` is missing.
        """
        n = sum(1 for key in flat if key.startswith("layer") and key.endswith("/loss"))
        layers = tuple(LayerStats.of(flat, k) for k in range(1, n + 1))
        return cls(int(flat["epoch"]), float(flat.get("seconds", 0.0)), layers,
                   float(flat.get("head/loss", math.nan)))


@dataclass
class PassCursor:
    """Where training stands, down to the batch.

    ``epoch`` epochs are done. Within the current epoch, ``stage`` layer passes are done (greedy
    schedule) and ``done`` holds their mean statistics. Within the current pass, ``batches``
    batches are done, with the sums of their statistics and their ``seconds``.
    """

    epoch: int = 0
    stage: int = 0
    done: dict[str, float] = field(default_factory=dict)
    batches: int = 0
    sums: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def end_pass(self) -> None:
        """Clear the position inside the pass (between passes)."""
        self.batches, self.sums, self.seconds = 0, {}, 0.0

    def state_dict(self) -> dict[str, Any]:
        """The cursor in plain types: ``epoch``, ``stage``, ``partial`` (the done passes' means) and
        ``position`` (mid-pass only: ``batches``, ``seconds``; always ``sums``).

        Returns
        -------
        dict
        """
        position = {"batches": self.batches, "seconds": self.seconds} if self.batches else {}
        return {"epoch": self.epoch, "stage": self.stage, "partial": dict(self.done),
                "position": {**position, "sums": {k: float(v) for k, v in self.sums.items()}}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the cursor from :meth:`state_dict`'s output (``position`` may be missing).

        Parameters
        ----------
        state : as :meth:`state_dict` wrote it.
        """
        self.epoch, self.stage, self.done = int(state["epoch"]), int(state["stage"]), dict(state["partial"])
        position = state.get("position", {})
        self.end_pass()
        if position.get("batches"):
            self.batches, self.sums = int(position["batches"]), dict(position["sums"])
            self.seconds = float(position.get("seconds", 0.0))


def warn_if_silent(record: EpochRecord, history: Sequence[EpochRecord]) -> None:
    """Warn the first epoch a layer is nearly silent (below ``SILENT_RATE`` and ``SILENT_SPIKES``).

    A diagnostic of :class:`LayerTrainer` (its default ``diagnostics``), called after every epoch
    with the epoch's record and the earlier ones.

    Parameters
    ----------
    record : this epoch's record.
    history : the earlier epochs' records.
    """
    def silent(r: EpochRecord, k: int) -> bool:
        return k < len(r.layers) and r.layers[k].rate < SILENT_RATE and r.layers[k].spikes_per_bin < SILENT_SPIKES

    for k, stats in enumerate(record.layers):
        if silent(record, k) and not any(silent(r, k) for r in history):
            warnings.warn(
                f"layer {k + 1} is nearly silent in epoch {record.epoch}: {stats.spikes_per_bin:.1f} "
                f"spikes per input and time bin ({stats.rate:.2%} of its neuron-steps), so "
                "its local loss and the layers above it get little signal. Without normalisation rates "
                "fall with depth; --norm batch (the default) keeps every layer's currents at unit "
                "variance, and fewer layers or a lower threshold raise them too",
                RuntimeWarning, stacklevel=2,
            )


def warn_if_head_silent(metrics: Mapping[str, Any]) -> None:
    """Warn when a run's spiking readout never fired on the held-out inputs (trained or control).

    Every class then scores 0 and every input is predicted as class 0: the accuracy is that of a
    constant guess, and the run says why instead of leaving a bare 0.1.

    Parameters
    ----------
    metrics : a run's metrics (``head_rate`` and ``control_head_rate``; ``None`` for a linear head).
    """
    for key, net in (("head_rate", "trained network"), ("control_head_rate", "untrained control")):
        if metrics.get(key) == 0.0:
            warnings.warn(
                f"the spiking readout of the {net} never fired on the {metrics.get('n_test', '?')} held-out "
                "inputs: every class scores 0 and every input is predicted as class 0. The energy of spike "
                "counts has no gradient once the head falls silent (benchmarks/results/lif_readout_silence.md); "
                "the linear readout, the default, does not have this limit",
                RuntimeWarning, stacklevel=2,
            )


Diagnostic = Callable[[EpochRecord, Sequence[EpochRecord]], None]
