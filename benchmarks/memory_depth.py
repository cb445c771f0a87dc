"""Peak training memory against depth: spikeff's layer-local trainer vs the snntorch BPTT baseline.

    python benchmarks/memory_depth.py --out benchmarks/results/memory_depth_cpu.md
    python benchmarks/memory_depth.py --device cuda --out benchmarks/results/memory_depth_cuda.md

Depth is the only change: ``depth`` conv layers of ``--channels`` each on ``(2, S, S)`` frames,
pooling ``--pool`` (1 by default, so every layer has the same activation size; the deeper
layers of a pooled net are smaller and say less about depth). Every (method, depth, repeat)
runs in a fresh subprocess: one warm-up training step (Adam's state is made there), then the
measured step on the same synthetic batch. Measures of the measured step:

* ``tensors``: peak bytes of live tensor storage. Every storage that an aten op makes during
  the step is counted from its creation to its release (a ``TorchDispatchMode`` plus a weak
  reference to each storage), on top of the storages alive before the step (parameters,
  optimizer state, the input batch; gradients are dropped first, as both trainers drop them).
  Exact and device-independent; it misses only memory that ops use internally (e.g. conv
  workspaces) and allocator overhead.
* ``saved``: peak bytes of the tensors saved for backward and still held by a graph
  (``torch.autograd.graph.saved_tensors_hooks``; a storage counts once however often saved).
* ``cuda``: ``torch.cuda.max_memory_allocated`` over the measured step (CUDA only).
* ``rss``: growth of the process's peak resident set (``ru_maxrss``) over its value after the
  imports: a high-water mark over setup, warm-up and measured step, with op workspaces and
  allocator overhead. The workers run with ``MALLOC_MMAP_THRESHOLD_=65536`` so that glibc
  returns freed large blocks at once; with its default, heap fragmentation doubled the figure.

With ``--op-transients K`` on CUDA, each worker runs one more step under :class:`OpTransients`
and lists the ``K`` ops that held the most memory beyond their inputs and outputs (cuDNN
workspaces and the like), to explain a ``cuda`` peak above the live tensors.

The report gives the median over ``--repeats`` (``tensors`` and ``saved`` are deterministic)
and each method's ratio to its depth-1 net.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import weakref
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from spikeff.baselines.bptt import SnnTorchNet
from spikeff.fileio import atomic_write
from spikeff.network import NetworkConfig, SpikingNet
from spikeff.provenance import device_name, git_commit
from spikeff.trainer import LayerTrainer, TrainConfig

MIB = 2.0**20
METHODS = ("spikeff", "bptt")
TARGET = 1.2  # the bound on spikeff's depth-3 / depth-1 peak


class LiveStorage(TorchDispatchMode):
    """Bytes of the storages made by ops inside the mode and still alive; their peak after each op."""

    def __init__(self, resident: list[torch.Tensor]) -> None:
        super().__init__()
        self.live = self.peak = 0
        self._seen: set[int] = set()
        for t in resident:  # alive before the step: known, not counted here
            self._track(t.untyped_storage(), count=False)

    def _track(self, storage: torch.UntypedStorage, count: bool = True) -> None:
        key = id(storage)  # the Python storage object lives as long as the storage itself
        if key in self._seen:
            return
        nbytes = storage.nbytes() if count else 0
        self._seen.add(key)
        self.live += nbytes
        weakref.finalize(storage, self._release, key, nbytes).atexit = False

    def _release(self, key: int, nbytes: int) -> None:
        self._seen.discard(key)
        self.live -= nbytes

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in _tensors(out):
            self._track(t.untyped_storage())
        self.peak = max(self.peak, self.live)
        return out


def _tensors(out: Any) -> list[torch.Tensor]:
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, (list, tuple)):
        return [t for o in out for t in _tensors(o)]
    return []


class SavedForBackward:
    """``saved_tensors_hooks`` pair that tracks the bytes held by autograd graphs and their peak."""

    def __init__(self) -> None:
        self.live = self.peak = 0
        self._count: dict[tuple[str, int], list[int]] = {}

    def pack(self, t: torch.Tensor) -> _Held:
        return _Held(self, t)

    @staticmethod
    def unpack(held: _Held) -> torch.Tensor:
        return held.tensor

    def add(self, key: tuple[str, int], nbytes: int) -> None:
        entry = self._count.setdefault(key, [nbytes, 0])
        if entry[1] == 0:
            self.live += nbytes
            self.peak = max(self.peak, self.live)
        entry[1] += 1

    def drop(self, key: tuple[str, int]) -> None:
        entry = self._count[key]
        entry[1] -= 1
        if entry[1] == 0:
            self.live -= entry[0]
            del self._count[key]


class _Held:
    def __init__(self, meter: SavedForBackward, t: torch.Tensor) -> None:
        storage = t.untyped_storage()
        self.meter, self.tensor, self.key = meter, t, (str(t.device), storage.data_ptr())
        meter.add(self.key, storage.nbytes())

    def __del__(self) -> None:
        self.meter.drop(self.key)


def _storage_bytes(tensors: list[torch.Tensor]) -> int:
    return sum({(str(t.device), t.untyped_storage().data_ptr()): t.untyped_storage().nbytes()
                for t in tensors}.values())


class OpTransients(TorchDispatchMode):
    """Per aten op, the most device memory it held beyond its inputs and outputs (CUDA).

    Before each op the allocator's peak is reset; after it, ``peak - allocated before -
    bytes of new outputs`` is what the op used internally (workspaces, temporaries). The
    largest value per op name is kept. Resetting the peak breaks a step-level peak, so this
    runs on its own step.
    """

    def __init__(self, allocated: Callable[[], int], peak: Callable[[], int], reset: Callable[[], None]) -> None:
        super().__init__()
        self.allocated, self.peak, self.reset = allocated, peak, reset
        self.worst: dict[str, int] = {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        before = self.allocated()
        self.reset()
        out = func(*args, **(kwargs or {}))
        new = _storage_bytes(_tensors(out))
        extra = self.peak() - before - new
        name = str(func.overloadpacket)
        self.worst[name] = max(self.worst.get(name, 0), extra)
        return out

    def top(self, k: int) -> list[tuple[str, int]]:
        return sorted(self.worst.items(), key=lambda kv: -kv[1])[:k]


def _setup(method: str, cfg: NetworkConfig, args: argparse.Namespace, device: torch.device):
    """The model, its optimizers' tensors and a training-step closure on a fixed synthetic batch."""
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(args.time_bins, args.batch, *cfg.input_shape, generator=g) < 0.2).float().to(device)
    y = (torch.arange(args.batch) % cfg.n_classes).to(device)
    if method == "spikeff":
        net = SpikingNet(cfg, g).to(device)
        trainer = LayerTrainer(net, TrainConfig(trials=args.trials, schedule=args.schedule),
                               torch.Generator(device=device).manual_seed(1))
        opts = trainer.layer_opts + [trainer.head_opt]

        def step() -> None:
            trainer.train_epoch([(x, y)])
    else:
        net = SnnTorchNet(cfg, g).to(device)
        opt = torch.optim.Adam(net.parameters(), lr=5e-3)
        opts = [opt]

        def step() -> None:
            z, _, _ = net(x)
            loss = F.cross_entropy(z, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return net, opts, (x, y), step


def measure(method: str, depth: int, args: argparse.Namespace) -> dict[str, Any]:
    """One warm-up step, then the measured step; bytes (see the module doc)."""
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    device = torch.device(args.device)
    cfg = NetworkConfig(input_shape=(2, args.size, args.size), n_classes=10, conv_channels=(args.channels,) * depth,
                        pool=args.pool)
    net, opts, batch, step = _setup(method, cfg, args, device)
    step()
    net.zero_grad(set_to_none=True)
    state = [t for o in opts for s in o.state.values() for t in s.values() if isinstance(t, torch.Tensor)]
    resident = list(net.parameters()) + state + list(batch)
    out: dict[str, Any] = {"method": method, "depth": depth, "resident": _storage_bytes(resident)}
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    saved = SavedForBackward()
    live = LiveStorage(resident)
    with torch.autograd.graph.saved_tensors_hooks(saved.pack, saved.unpack), live:
        step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        out["cuda"] = torch.cuda.max_memory_allocated(device)
    out["tensors"] = out["resident"] + live.peak
    out["saved"] = saved.peak
    out["rss"] = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) * 1024  # KiB on Linux
    if args.op_transients and device.type == "cuda":
        meter = OpTransients(lambda: torch.cuda.memory_allocated(device),
                             lambda: torch.cuda.max_memory_allocated(device),
                             lambda: torch.cuda.reset_peak_memory_stats(device))
        net.zero_grad(set_to_none=True)
        with meter:
            step()
        out["op_transients"] = meter.top(args.op_transients)
    return out


def _worker_cmd(method: str, depth: int, args: argparse.Namespace) -> list[str]:
    opts = ["--channels", args.channels, "--size", args.size, "--pool", args.pool, "--batch", args.batch,
            "--trials", args.trials, "--time-bins", args.time_bins, "--schedule", args.schedule,
            "--device", args.device, "--threads", args.threads, "--op-transients", args.op_transients]
    return [sys.executable, __file__, "--worker", method, "--depth", str(depth), *map(str, opts)]


def _run_all(args: argparse.Namespace) -> list[dict[str, Any]]:
    env = {**os.environ, "TQDM_DISABLE": "1", "MALLOC_MMAP_THRESHOLD_": "65536",
           "PYTHONPATH": os.pathsep.join(filter(None, [
               str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH")]))}
    rows = []
    for rep in range(args.repeats):
        for method in METHODS:
            for depth in args.depths:
                proc = subprocess.run(_worker_cmd(method, depth, args), capture_output=True, text=True, env=env)
                if proc.returncode != 0:
                    raise RuntimeError(f"{method} depth {depth} failed:\n{proc.stderr[-3000:]}")
                row = json.loads(proc.stdout.strip().splitlines()[-1])
                rows.append(row)
                print(f"repeat {rep + 1}: {method} depth {depth}: tensors {row['tensors'] / MIB:.1f} MiB, "
                      f"saved {row['saved'] / MIB:.1f} MiB, rss {row['rss'] / MIB:.0f} MiB", flush=True)
                for name, nbytes in row.get("op_transients", []):
                    print(f"    op transient {name}: {nbytes / MIB:.1f} MiB", flush=True)
    return rows


def _medians(rows: list[dict[str, Any]], keys: list[str]) -> dict[tuple[str, int], dict[str, float]]:
    out: dict[tuple[str, int], dict[str, float]] = {}
    for r in rows:
        out.setdefault((r["method"], r["depth"]), {k: [] for k in keys})
        for k in keys:
            out[(r["method"], r["depth"])][k].append(r[k])
    return {key: {k: statistics.median(v) for k, v in d.items()} for key, d in out.items()}


def report(rows: list[dict[str, Any]], args: argparse.Namespace, command: str) -> str:
    keys = ["resident", "tensors", "saved", "rss"] + (["cuda"] if args.device.startswith("cuda") else [])
    med = _medians(rows, keys)
    commit = git_commit(Path(__file__).resolve().parents[1])
    n = args.trials
    lines = [
        "# Peak training memory vs depth: spikeff (layer-local) vs BPTT (snntorch)",
        "",
        f"- command: `{command}`",
        f"- commit: {commit['commit']}" + (" (with uncommitted changes)" if commit["dirty"] else ""),
        f"- device: {device_name(args.device)}; torch {torch.__version__}",
        f"- date: {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- network: depth x conv {args.channels} channels (3x3, pool {args.pool}) on (2, {args.size}, {args.size}) "
        f"frames, linear head, 10 classes; batch {args.batch}, T={args.time_bins}; spikeff: {n} trials, "
        f"schedule {args.schedule}, escape noise (default LIF); BPTT: deterministic snntorch Leaky, 1 pass per input",
        f"- one warm-up step, then one measured step per fresh process; median of {args.repeats} repeats",
        "",
        "Measures (MiB): **tensors** = peak live tensor storage during the step, including what is resident "
        "(parameters, Adam state, input batch); **saved** = peak of the tensors held for backward; **rss** = "
        "growth of the process's peak RSS over its value after the imports (setup, warm-up and measured step; "
        "includes op workspaces and allocator overhead; glibc `MALLOC_MMAP_THRESHOLD_=65536`)"
        + ("; **cuda** = `torch.cuda.max_memory_allocated`" if "cuda" in keys else "") + ". "
        "Method: see the docstring of `benchmarks/memory_depth.py`.",
        "",
        "| method | depth | resident | tensors | ×depth 1 | saved | ×depth 1 | rss | ×depth 1 |"
        + (" cuda | ×depth 1 |" if "cuda" in keys else ""),
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|" + ("---:|---:|" if "cuda" in keys else ""),
    ]
    for method in METHODS:
        base = med[(method, args.depths[0])]
        for depth in args.depths:
            m = med[(method, depth)]
            cells = [f"{m['resident'] / MIB:.1f}"]
            for k in [k for k in keys if k != "resident"]:
                cells += [f"{m[k] / MIB:.1f}", f"{m[k] / base[k]:.2f}"]
            lines.append(f"| {method} | {depth} | " + " | ".join(cells) + " |")
    if 1 in args.depths and 3 in args.depths:
        key = "cuda" if "cuda" in keys else "tensors"
        r = med[("spikeff", 3)][key] / med[("spikeff", 1)][key]
        rb = med[("bptt", 3)][key] / med[("bptt", 1)][key]
        lines += ["", f"Target (issue 6): spikeff depth 3 / depth 1 peak ≤ {TARGET}. Measured on `{key}`: "
                      f"**{r:.2f}** ({'met' if r <= TARGET else 'not met'}); BPTT: {rb:.2f}."]
    transients = [r for r in rows if r.get("op_transients")]
    if transients:
        lines += ["", "Ops that held the most CUDA memory beyond their inputs and outputs "
                  "(one step, first repeat):", ""]
        seen = set()
        for r in transients:
            if (r["method"], r["depth"]) not in seen:
                seen.add((r["method"], r["depth"]))
                ops = ", ".join(f"`{name}` {nbytes / MIB:.0f} MiB" for name, nbytes in r["op_transients"])
                lines.append(f"- {r['method']} depth {r['depth']}: {ops}")
    return "\n".join(lines) + "\n"


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--depths", type=lambda s: [int(v) for v in s.split(",")], default=[1, 2, 3, 4])
    ap.add_argument("--channels", type=int, default=32)
    ap.add_argument("--size", type=int, default=16, help="frame height and width S")
    ap.add_argument("--pool", type=int, default=1)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--trials", type=int, default=8)
    ap.add_argument("--time-bins", type=int, default=10)
    ap.add_argument("--schedule", choices=("simultaneous", "greedy"), default="simultaneous")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0, help="torch threads in each worker (0: torch's default)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path, default=None, help="write the Markdown report here")
    ap.add_argument("--op-transients", type=int, default=0, metavar="K",
                    help="CUDA: after the measured step, run one more and print the K ops that held the most "
                         "memory beyond their inputs and outputs (workspaces)")
    ap.add_argument("--worker", choices=METHODS, help=argparse.SUPPRESS)
    ap.add_argument("--depth", type=int, help=argparse.SUPPRESS)
    return ap


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    if args.worker:
        print(json.dumps(measure(args.worker, args.depth, args)))
        return 0
    for flag in ("channels", "size", "pool", "batch", "trials", "time_bins", "repeats"):
        if getattr(args, flag) < 1:
            raise SystemExit(f"memory_depth.py: --{flag.replace('_', '-')} must be >= 1")
    NetworkConfig(input_shape=(2, args.size, args.size), n_classes=10,
                  conv_channels=(args.channels,) * max(args.depths),
                  pool=args.pool)  # fail early if the deepest net does not fit the frames
    text = report(_run_all(args), args, "python benchmarks/memory_depth.py " + " ".join(argv))
    print(text)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(args.out, lambda f: f.write(text), mode="w")
    return 0


if __name__ == "__main__":
    sys.exit(main())
