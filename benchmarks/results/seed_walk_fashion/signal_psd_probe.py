"""Is the noise-corrected signal matrix indefinite under strong input noise? Eigenvalues per layer on one batch."""
import torch

from spikeff.cli import QUICKSTART
from spikeff.config import RunConfig, overrides
from spikeff.data import make_loader
from spikeff.ed import diversity_matrix, effective_dimensionality
from spikeff.experiment import run_splits
from spikeff.network import SpikingNet, spike_counts
from spikeff.noise import trial_noise
from spikeff.trainer import LayerTrainer

torch.set_num_threads(1)
base = overrides(overrides(RunConfig(), QUICKSTART), {
    "data.dataset": "fashion", "data.limit": (640,), "data.tune": True, "runtime.data_dir": "../shared/data",
    "train.epochs": 1})
splits = run_splits(base)
for name, ch in [("escape only", {}), ("thin 0.8 shift 2", {"train.input_keep": 0.8, "train.input_shift": 2})]:
    cfg = overrides(base, ch)
    net = SpikingNet(cfg.network.for_data(splits.frame_shape, splits.n_classes), torch.Generator().manual_seed(0))
    trainer = LayerTrainer(net, cfg.train, torch.Generator().manual_seed(1))
    trainer.fit(make_loader(splits.train, 32, shuffle=True, seed=0))
    x, _ = next(iter(make_loader(splits.train, 64, shuffle=False, seed=0)))
    noise = trial_noise(cfg.train.input_keep, cfg.train.input_shift)
    g = torch.Generator().manual_seed(5)
    h = noise.apply(x, 8, g) if noise else x
    with torch.no_grad():
        for k, layer in enumerate(net.layers):
            s = layer(h, g, trials=1 if (k > 0 or noise) else 8)
            c = spike_counts(s, 8)
            for kind in ("signal", "covariance"):
                m = diversity_matrix(c, kind)
                ev = torch.linalg.eigvalsh(m)
                print(name, f"layer {k+1}", kind, "ED", round(float(effective_dimensionality(m)), 2),
                      "neg share of |eig|", round(float(ev.clamp(max=0).abs().sum() / ev.abs().sum()), 3),
                      "ED of PSD part", round(float(ev.clamp(min=0).sum()**2 / ev.clamp(min=0).pow(2).sum()), 2),
                      flush=True)
            h = s
