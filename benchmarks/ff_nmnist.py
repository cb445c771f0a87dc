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
import copy
import datetime
import json
import shlex
import sys
import time
from dataclasses import asdict
from pathlib import Path

import torch
from torch.utils.data import Subset

from spikeff.baselines.ff import PREDICT_MODES, FFConfig, FFNet, evaluate_ff, fit_head, train_ff, train_layers
from spikeff.bench import wilson_interval
from spikeff.config import RunConfig
from spikeff.data import load_splits, make_loader
from spikeff.evaluation import evaluate
from spikeff.experiment import seeded_generators, untrained_control
from spikeff.network import NetworkConfig
from spikeff.provenance import device_name, git_commit
from spikeff.readout_fit import fit_readout

ROOT = Path(__file__).resolve().parents[1]
OTHER_HEADS = ("all", "upper")  # select also scores heads on these layers (FFConfig.head_layers)


def control_accuracy(net_cfg: NetworkConfig, train_set, test_set, seed: int, batch_size: int) -> float:
    """The bench's ``random`` method (:func:`spikeff.experiment.train_and_evaluate`'s control) on
    ``train_set`` / ``test_set``: the untrained network of ``seed`` (batch norm calibrated on the
    training batches), its linear head fitted for ``epochs + readout_epochs`` of the default
    ``RunConfig`` (learning rate picked on a share of the training inputs), scored in energy mode
    with ``trials`` noisy trials, as the bench reports it."""
    run, device = RunConfig(), torch.device("cpu")
    gens = seeded_generators(seed, device)
    train = make_loader(train_set, batch_size, shuffle=True, seed=seed)
    ctrl = untrained_control(net_cfg, seed, device, train, gens["control"])
    fit_readout(ctrl, train, run.train, gens["control"], run.train.epochs + run.eval.readout_epochs,
                run.eval.readout_lrs)
    test = make_loader(test_set, 64, shuffle=False, seed=0)
    return evaluate(ctrl, test, run.train.trials, gens["eval"]).accuracy["energy"]


def validation_share(splits) -> tuple[Subset, Subset]:
    """640 fit / 160 held-out samples of the training split (a fixed seed-0 permutation)."""
    perm = torch.randperm(len(splits.train), generator=torch.Generator().manual_seed(0))
    return Subset(splits.train, perm[:640].tolist()), Subset(splits.train, perm[640:].tolist())


def select(args: argparse.Namespace, splits, net_cfg: NetworkConfig) -> None:
    fit_set, val_set = validation_share(splits)
    state = json.loads(Path(args.state).read_text()) if Path(args.state).exists() else {"rows": []}
    if "control" not in state:  # the untrained control on the same 160 held-out samples (seed 0)
        t0 = time.perf_counter()
        state["control"] = {"val": control_accuracy(net_cfg, fit_set, val_set, 0, args.batch_size),
                            "seconds": time.perf_counter() - t0}
        print(json.dumps({"control": state["control"]}), flush=True)
        Path(args.state).write_text(json.dumps(state, indent=1))
    for spec in args.config:
        cfg = FFConfig(**json.loads(spec))
        gen = seeded_generators(0, torch.device("cpu"))["init"]
        net = FFNet(net_cfg, cfg, gen)
        noise = torch.Generator().manual_seed(int(torch.randint(2**31, (1,), generator=gen)))
        head_seed = int(torch.randint(2**31, (1,), generator=gen))
        head_gen = torch.Generator().manual_seed(head_seed)
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
        # the same trained layers read by heads on other layers (paired: same layers, same head draws)
        read = [net.head_layers]
        for h in OTHER_HEADS:
            other = copy.deepcopy(net)
            other.set_head(h, torch.Generator().manual_seed(0))
            if other.head_layers in read:
                continue
            read.append(other.head_layers)
            fit_head(other, train, torch.Generator().manual_seed(head_seed))
            accs[f"head_{h}"] = evaluate_ff(other, val, mode="head")[0]
        row = {"config": {k: v for k, v in asdict(cfg).items()
                          if v != getattr(FFConfig, k, None) or k in json.loads(spec)},
               "spec": json.loads(spec), "full": asdict(cfg), "val": accs, "seconds": seconds,
               "losses": [[round(h[f"layer{i + 1}/loss"], 4) for i in range(len(net.layers))] for h in history],
               "gaps": [[round(h[f"layer{i + 1}/goodness_gap"], 3) for i in range(len(net.layers))] for h in history]}
        print(json.dumps(row), flush=True)
        state["rows"].append(row)
        Path(args.state).write_text(json.dumps(state, indent=1))


def test(args: argparse.Namespace, splits, net_cfg: NetworkConfig) -> None:
    cfg = FFConfig(**json.loads(args.config[0]))
    state = json.loads(Path(args.state).read_text()) if Path(args.state).exists() else {"rows": []}
    test_loader = make_loader(splits.test, 64, shuffle=False, seed=0)
    commit = git_commit()  # the code as run
    seeds = []
    for seed in args.seeds:
        train = make_loader(splits.train, args.batch_size, shuffle=True, seed=seed)
        gen = seeded_generators(seed, torch.device("cpu"))["init"]
        res = train_ff(net_cfg, cfg, train, test_loader, generator=gen)
        ctrl = control_accuracy(net_cfg, splits.train, splits.test, seed, args.batch_size)
        seeds.append({"seed": seed, "accuracy": res.accuracy, "ci": wilson_interval(res.accuracy, len(splits.test)),
                      "train_seconds": res.train_seconds,
                      "synops": res.ops.total("synops"), "macs": res.ops.total("macs"),
                      "control": ctrl, "control_ci": wilson_interval(ctrl, len(splits.test)), "n": len(splits.test)})
        print(json.dumps(seeds[-1]), flush=True)
        write_report(args, cfg, state, seeds, commit)  # after every seed


def median_interval(accs: list[float], n: int) -> str:
    """``median [Wilson 95 % interval of the median on n samples]``."""
    med = sorted(accs)[len(accs) // 2] if len(accs) % 2 else sum(sorted(accs)[len(accs) // 2 - 1:][:2]) / 2
    lo, hi = wilson_interval(med, n)
    return f"{med:.3f} [{lo:.3f}, {hi:.3f}]"


def setting(full: dict) -> dict:
    """A row's full ``FFConfig`` as its difference from the current defaults."""
    defaults = json.loads(json.dumps(asdict(FFConfig())))  # tuples as lists, as stored
    return {k: v for k, v in full.items() if v != defaults.get(k)}


def write_report(args: argparse.Namespace, cfg: FFConfig, state: dict, seeds: list[dict], commit: dict) -> None:
    rows = state["rows"]
    defaults = asdict(FFConfig())
    cut = sys.argv.index("--select-commands") + 1 if "--select-commands" in sys.argv else len(sys.argv)
    command, rest = sys.argv[:cut], sys.argv[cut:]
    lines = [
        "# Forward-Forward baseline on N-MNIST", "",
        f"- command: `{shlex.join(['python'] + command)}`" + (" (the selection commands below)" if rest else ""),
        f"- selection commands: {', '.join(f'`{c}`' for c in args.select_commands) or 'see the rows'}",
        f"- commit: {commit['commit']} (the FF code as run; the report is committed after it)"
        + ("; the tree also held uncommitted changes (other work in progress) outside the FF files" if commit["dirty"]
           else ""),
        f"- device: {device_name('cpu')}; the cores shared with other jobs",
        f"- date: {datetime.date.today().isoformat()}",
        "- data: `load_splits('nmnist', '../shared/data', split_seed=0)`: 800 train / 200 test, T=10, "
        "frames (2, 34, 34); "
        f"network: `NetworkConfig` defaults (conv 64, 128; pool 2; deterministic LIF); batch {args.batch_size}",
        "", "## Selection (validation share: 640 fit / 160 held out of the training split, seed 0)", "",
        "Every row trains once (seed 0) and scores the 160 held-out samples in the three prediction modes: "
        "`goodness` (sum over all layers, 10 label passes), `goodness_top` (layers >= 2), `head` "
        "(linear head on the neutral pass's normalised counts of the layers `head_layers` names: the top one by "
        "default); for the rows that have them, `head_all` / `head_upper`: another head fitted on the same trained "
        "layers (same head seed) reading the normalised counts of all layers / of layers >= 2 (absent where "
        "that is the row's own head). Each setting is shown as its difference "
        f"from the current defaults `{defaults}`: what the row ran, whatever the defaults were when it ran "
        "(rows from before the `loss` option ran Hinton's threshold loss; rows whose command says "
        "'after the test' were run after the test below and played no part in its choice).", "",
        "| setting | goodness | goodness_top | head | head_all | head_upper | train s (incl. head fit) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        v = r["val"]
        more = " | ".join(f"{v[k]:.3f}" if k in v else "-" for k in ("head_all", "head_upper"))
        lines.append(f"| `{json.dumps(setting(r['full']))}` | {v['goodness']:.3f} | {v['goodness_top']:.3f} "
                     f"| {v['head']:.3f} | {more} | {r['seconds']:.0f} |")
    if "control" in state:
        c = state["control"]
        lo, hi = wilson_interval(c["val"], 160)
        lines += ["", f"Untrained control on the same 160 held-out samples (the bench's `random` method, "
                  f"`control_accuracy`: seed 0, fitted on the 640): {c['val']:.3f} [{lo:.3f}, {hi:.3f}] "
                  f"(Wilson 95 %, n=160); {c['seconds']:.0f} s. One held-out sample is {1 / 160:.3f}."]
    accs = [s["accuracy"] for s in seeds]
    lines += [
        "", f"## Test (chosen: `{json.dumps(json.loads(args.config[0]))}` "
        f"({'the current defaults' if asdict(cfg) == defaults else 'on the current defaults'}), i.e. "
        f"`FFConfig({', '.join(f'{k}={v!r}' for k, v in asdict(cfg).items())})`; "
        "trained on all 800, scored once on the 200 test samples)", "",
        "| seed | test accuracy | Wilson 95% | untrained control | its Wilson 95% | train s "
        "| synops / inference | MACs / inference |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for s in seeds:
        ctrl = (f"{s['control']:.3f} | [{s['control_ci'][0]:.3f}, {s['control_ci'][1]:.3f}]" if "control" in s
                else "- | -")
        lines.append(f"| {s['seed']} | {s['accuracy']:.3f} | [{s['ci'][0]:.3f}, {s['ci'][1]:.3f}] | {ctrl} | "
                     f"{s['train_seconds']:.0f} | {s['synops']:.3g} | {s['macs']:.3g} |")
    if accs:
        n = seeds[0]["n"]
        mean = sum(accs) / len(accs)
        std = (sum((a - mean) ** 2 for a in accs) / max(len(accs) - 1, 1)) ** 0.5
        lines += ["", f"FF: median {median_interval(accs, n)} (Wilson 95 % of the median, n={n}), mean {mean:.3f} "
                  f"(std {std:.3f}) over seeds {[s['seed'] for s in seeds]}."]
        ctrls = [s["control"] for s in seeds if "control" in s]
        if ctrls:
            lines.append(f"Untrained control (the bench's `random`: same seeds, same 800 / 200, energy mode): median "
                         f"{median_interval(ctrls, n)}. The control is the network of the seed with its batch norm "
                         "calibrated and a linear head fitted; it is not FF's own initialisation.")
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
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = p.parse_args()
    if args.stage == "test":
        args.config = args.config or ["{}"]
    torch.set_num_threads(args.threads)
    splits = load_splits("nmnist", args.data, split_seed=0)
    net_cfg = NetworkConfig(input_shape=tuple(splits.frame_shape), n_classes=splits.n_classes)
    (select if args.stage == "select" else test)(args, splits, net_cfg)


if __name__ == "__main__":
    main()
