"""Spike rates of a trained quickstart net and its untrained control on clean and thinned test digits.

A diagnostic for digits_robustness.md: do the trained layers' rates depend less on the input's event
count than the control's? Usage: python rates.py RUN_DIR (a `spikeff train --quickstart --out RUN_DIR`).
"""

import sys
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from spikeff.checkpoint import load_checkpoint
from spikeff.config import RunConfig, from_dict
from spikeff.data import make_loader
from spikeff.evaluation import evaluate
from spikeff.experiment import EVAL_BATCH_SIZE, run_splits, untrained_control
from spikeff.label_efficiency import view_batches
from spikeff.network import SpikingNet


def load_run(run: Path) -> tuple[RunConfig, SpikingNet, SpikingNet, DataLoader, DataLoader]:
    """A `spikeff train` run's config, trained net, untrained control (built and calibrated as the run
    does, with another noise draw), and its training and test batches in order."""
    net, meta = load_checkpoint(run / "model.pt")
    config = from_dict(RunConfig, meta["config"])
    splits = run_splits(config)
    test = make_loader(splits.test, EVAL_BATCH_SIZE, shuffle=False, seed=0)
    train = make_loader(splits.train, EVAL_BATCH_SIZE, shuffle=False, seed=0)
    ctrl = untrained_control(net.config, config.seed, torch.device("cpu"), train, torch.Generator().manual_seed(1))
    return config, net, ctrl, train, test


if __name__ == "__main__":
    run = Path(sys.argv[1])
    config, net, ctrl, _, test = load_run(run)
    print(f"{run}: seed {config.seed}; mean spike rate per layer (spikes per neuron and step), "
          f"{len(test.dataset)} test digits")
    for name, n in (("trained", net), ("control", ctrl)):
        for view in ("clean", "thinned"):
            batches = view_batches(test, config.seed, [view])[view]
            ev = evaluate(n, batches, config.test_trials, torch.Generator().manual_seed(2), ("energy",))
            print(f"{name:8s} {view:8s} " + "  ".join(f"layer {i + 1} {r:.4f}" for i, r in enumerate(ev.layer_rates)))
