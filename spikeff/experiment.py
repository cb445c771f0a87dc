"""One training run, shared by ``spikeff train`` and ``spikeff-bench``.

Train the layers by ED compression, fit the readout with the layers frozen, evaluate the
three readout modes on the held-out split, and do the same for the control: the same
network with its untrained initial weights and the same readout budget. The numbers are
those of the last epoch; nothing is selected on the held-out split.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch

from .data import Splits, make_loader
from .network import NetworkConfig, SpikingNet
from .trainer import LayerTrainer, TrainConfig, evaluate, fit_readout

__all__ = ["EVAL_BATCH_SIZE", "RunResult", "seeded_generators", "train_and_evaluate"]

# Fixed so that `spikeff eval` draws the same noise as the run that wrote the checkpoint.
EVAL_BATCH_SIZE = 64


@dataclass
class RunResult:
    net: SpikingNet
    metrics: dict[str, Any]
    history: list[dict[str, Any]]


def seeded_generators(seed: int, device: torch.device) -> dict[str, torch.Generator]:
    """Independent generators for init, training noise, evaluation noise and the control."""
    return {
        name: torch.Generator(device=device if name != "init" else "cpu").manual_seed(seed * 1000 + i)
        for i, name in enumerate(("init", "train", "eval", "control"))
    }


def train_and_evaluate(
    splits: Splits,
    net_config: NetworkConfig,
    train_config: TrainConfig,
    *,
    seed: int = 0,
    device: str | torch.device = "cpu",
    batch_size: int = 32,
    eval_trials: int | None = None,
    control: bool = True,
    num_workers: int = 0,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
) -> RunResult:
    """Train, fit the readout, evaluate; optionally the untrained control too."""
    device = torch.device(device)
    gens = seeded_generators(seed, device)
    net = SpikingNet(net_config, gens["init"]).to(device)
    initial = copy.deepcopy(net.state_dict())
    train_loader = make_loader(splits.train, batch_size, shuffle=True, seed=seed, num_workers=num_workers)
    test_loader = make_loader(splits.test, EVAL_BATCH_SIZE, shuffle=False, seed=seed, num_workers=num_workers)
    trials = eval_trials or train_config.trials

    t0 = time.perf_counter()
    trainer = LayerTrainer(net, train_config, gens["train"])
    history = trainer.fit(train_loader, on_epoch)
    fit_readout(net, train_loader, train_config, gens["train"], train_config.readout_epochs)
    train_seconds = time.perf_counter() - t0
    result = evaluate(net, test_loader, trials, gens["eval"])

    metrics: dict[str, Any] = {
        "dataset": splits.spec.name,
        "test_split": splits.test_name,
        "n_train": len(splits.train),
        "n_test": len(splits.test),
        "time_bins": splits.n_time_bins,
        "test_accuracy": {m: result[m] for m in ("energy", "average", "deterministic")},
        "layer_rates": result["layer_rates"],
        "epochs": train_config.epochs,
        "readout_epochs": train_config.readout_epochs,
        "trials": train_config.trials,
        "eval_trials": trials,
        "seed": seed,
        "device": str(device),
        "batch_size": batch_size,
        "train_seconds": train_seconds,
        "network": net_config.to_dict(),
        "train_config": asdict(train_config),
    }
    if control:
        ctrl = SpikingNet(net_config).to(device)
        ctrl.load_state_dict(initial)
        fit_readout(ctrl, train_loader, train_config, gens["control"], train_config.epochs + train_config.readout_epochs)
        c = evaluate(ctrl, test_loader, trials, gens["eval"])
        metrics["control_accuracy"] = {m: c[m] for m in ("energy", "average", "deterministic")}
        metrics["control_layer_rates"] = c["layer_rates"]
    return RunResult(net, metrics, history)
