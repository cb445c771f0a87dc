"""Forward-Forward baseline on N-MNIST: settings chosen on a validation share of the training split,
then the chosen setting trained on the whole training split and scored once on the test split.

    python benchmarks/ff_nmnist.py select --config '{"epochs": 4}' [--config ...]   # appends to --state
    python benchmarks/ff_nmnist.py test --config '{...}' --seeds 0 1 2               # writes --out

``select`` trains each ``FFConfig`` (JSON keyword arguments) on 640 of the 800 training samples
(a fixed ``torch.Generator`` seed-0 permutation) with seed 0 and scores the 160 held-out ones in
every prediction mode (goodness over all layers, over layers >= 2, the linear head on the
neutral pass). ``test`` runs :func:`spikeff.baselines.train_ff` (the bench's entry point) on all
800 and the 200 test samples, and writes the markdown report with the selection table.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

import torch
from torch.utils.data import Subset

from spikeff.baselines.ff import PREDICT_MODES, FFConfig, FFNet, evaluate_ff, fit_head, train_ff, train_layers
from spikeff.bench import wilson_interval
from spikeff.data import load_splits, make_loader
from spikeff.experiment import seeded_generators
from spikeff.network import NetworkConfig
from spikeff.provenance import device_name, git_commit

ROOT = Path(__file__).resolve().parents[1]


def select(args: argparse.Namespace, splits, net_cfg: NetworkConfig) -> None:
    perm = torch.randperm(len(splits.train), generator=torch.Generator().manual_seed(0))
    fit_set, val_set = Subset(splits.train, perm[:640].tolist()), Subset(splits.train, perm[640:].tolist())
    state = json.loads(Path(args.state).read_text()) if Path(args.state).exists() else {"rows": []}
    for spec in args.config:
        cfg = FFConfig(**json.loads(spec))
        gen = seeded_generators(0, torch.device("cpu"))["init"]
        net = FFNet(net_cfg, cfg, gen)
        noise = torch.Generator().manual_seed(int(torch.randint(2**31, (1,), generator=gen)))
        head_gen = torch.Generator().manual_seed(int(torch.randint(2**31, (1,), generator=gen)))
        train = make_loader(fit_set, args.batch_size, shuffle=True, seed=0)
        t0 = time.perf_counter()
        if cfg.epochs == 0:  # initialisation only (the data-dependent init on one batch)
            x, y = next(iter(train))
            net.init_from_batch(x, y)
            history = []
        else:
            history = train_layers(net, train, noise)
        fit_head(net, train, head_gen)
        seconds = time.perf_counter() - t0
        val = make_loader(val_set, 64, shuffle=False, seed=0)
        accs = {mode: evaluate_ff(net, val, mode=mode)[0] for mode in PREDICT_MODES}
        row = {"config": {k: v for k, v in asdict(cfg).items()
                          if v != getattr(FFConfig, k, None) or k in json.loads(spec)},
               "spec": json.loads(spec), "val": accs, "seconds": seconds,
               "losses": [[round(h[f"layer{i + 1}/loss"], 4) for i in range(len(net.layers))] for h in history],
               "gaps": [[round(h[f"layer{i + 1}/goodness_gap"], 3) for i in range(len(net.layers))] for h in history]}
        print(json.dumps(row), flush=True)
        state["rows"].append(row)
        Path(args.state).write_text(json.dumps(state, indent=1))


def test(args: argparse.Namespace, splits, net_cfg: NetworkConfig) -> None:
    cfg = FFConfig(**json.loads(args.config[0]))
    state = json.loads(Path(args.state).read_text()) if Path(args.state).exists() else {"rows": []}
    test_loader = make_loader(splits.test, 64, shuffle=False, seed=0)
    seeds = []
    for seed in args.seeds:
        train = make_loader(splits.train, args.batch_size, shuffle=True, seed=seed)
        gen = seeded_generators(seed, torch.device("cpu"))["init"]
        res = train_ff(net_cfg, cfg, train, test_loader, generator=gen)
        seeds.append({"seed": seed, "accuracy": res.accuracy, "ci": wilson_interval(res.accuracy, len(splits.test)),
                      "train_seconds": res.train_seconds,
                      "synops": res.ops.total("synops"), "macs": res.ops.total("macs")})
        print(json.dumps(seeds[-1]), flush=True)
        write_report(args, cfg, state["rows"], seeds)  # after every seed


def write_report(args: argparse.Namespace, cfg: FFConfig, rows: list[dict], seeds: list[dict]) -> None:
    defaults = asdict(FFConfig())
    lines = [
        "# Forward-Forward baseline on N-MNIST", "",
        f"- command: `{' '.join(['python'] + sys.argv)}`",
        f"- selection commands: {', '.join(f'`{c}`' for c in args.select_commands) or 'see the rows'}",
        f"- commit: {git_commit()['commit']} (the FF code as run; the report is committed after it)",
        f"- device: {device_name('cpu')} (shared with another job)",
        f"- date: {datetime.date.today().isoformat()}",
        "- data: `load_splits('nmnist', '../shared/data', seed=0)`: 800 train / 200 test, T=10, frames (2, 34, 34); "
        f"network: `NetworkConfig` defaults (conv 64, 128; pool 2; deterministic LIF); batch {args.batch_size}",
        "", "## Selection (validation share: 640 fit / 160 held out of the training split, seed 0)", "",
        "Every row trains once (seed 0) and scores the 160 held-out samples in the three prediction modes: "
        "`goodness` (sum over all layers, 10 label passes), `goodness_top` (layers >= 2), `head` "
        "(linear head on the neutral pass's normalised top-layer counts). Settings not shown are the defaults: "
        f"`{ {k: v for k, v in defaults.items() if k not in ('epochs',)} }`.", "",
        "| setting | goodness | goodness_top | head | train s (incl. head fit) |", "|---|---|---|---|---|",
    ]
    for r in rows:
        v = r["val"]
        lines.append(f"| `{json.dumps(r['spec'])}` | {v['goodness']:.3f} | {v['goodness_top']:.3f} | {v['head']:.3f} "
                     f"| {r['seconds']:.0f} |")
    accs = [s["accuracy"] for s in seeds]
    lines += [
        "", f"## Test (chosen: `{json.dumps({k: v for k, v in asdict(cfg).items() if v != defaults[k]})}` on the "
        f"defaults, i.e. `FFConfig({', '.join(f'{k}={v!r}' for k, v in asdict(cfg).items())})`; "
        "trained on all 800, scored once on the 200 test samples)", "",
        "| seed | test accuracy | Wilson 95% (n=200) | train s | synops / inference | MACs / inference |",
        "|---|---|---|---|---|---|",
    ]
    for s in seeds:
        lines.append(f"| {s['seed']} | {s['accuracy']:.3f} | [{s['ci'][0]:.3f}, {s['ci'][1]:.3f}] | "
                     f"{s['train_seconds']:.0f} | {s['synops']:.3g} | {s['macs']:.3g} |")
    if accs:
        mean = sum(accs) / len(accs)
        std = (sum((a - mean) ** 2 for a in accs) / max(len(accs) - 1, 1)) ** 0.5
        lines += ["", f"Mean {mean:.3f} (std {std:.3f}). References on the same 200 test samples: untrained "
                  "batch-normalised conv (64, 128) + linear readout (energy mode) 0.925-0.930; logistic regression on "
                  "raw event counts 0.900; BPTT about 0.95."]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("stage", choices=("select", "test"))
    p.add_argument("--config", action="append", default=[], help="FFConfig keyword arguments as JSON")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    p.add_argument("--state", default="/tmp/ff_nmnist_select.json")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "ff_nmnist.md"))
    p.add_argument("--select-commands", nargs="*", default=[])
    args = p.parse_args()
    args.config = args.config or ["{}"]
    torch.set_num_threads(2)
    splits = load_splits("nmnist", args.data, seed=0)
    net_cfg = NetworkConfig(input_shape=tuple(splits.frame_shape), n_classes=splits.n_classes)
    (select if args.stage == "select" else test)(args, splits, net_cfg)


if __name__ == "__main__":
    main()
