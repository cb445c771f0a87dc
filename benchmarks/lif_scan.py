"""LIF scan benchmark: forward + backward, eager vs compiled, fp32 vs bf16 currents.

    PYTHONPATH=. python benchmarks/lif_scan.py [--preset cpu|gpu] [--device cuda] [--repeats 10]

Per shape ``(T, N, C, H, W)`` and per case (scan backend x currents dtype) it times:

* ``scan``: the whole call as a layer makes it, ``spikes, _ = scan(I, p, gen)`` then
  ``spikes.backward(grad)``: noise drawn from the generator, forward, backward;
  ``eager`` is :func:`spikeff.neurons.lif_scan` (the reference, autograd over a Python loop),
  ``compiled`` is :class:`spikeff.neurons.CompiledLIFScan`;
* ``kernel fwd`` / ``kernel bwd`` (compiled only): the compiled forward and backward
  kernels alone (:func:`spikeff.scan.fused_forward` / :func:`~spikeff.scan.fused_backward` under ``torch.compile``,
  the noise already drawn): the LIF scan kernels whose bandwidth is reported.

Bytes moved (the minimum a fused kernel must move; ``E = T * N * C * H * W`` elements, ``b``
bytes per current, 2 for bf16 and 4 for fp32; the membrane, noise, spikes and gradients
of the spikes are float32; the initial and final membranes, ``2 * 4 * E / T``, are added):

* forward kernel: read currents ``b*E`` + read uniform noise ``4E`` + write spikes ``4E``;
* backward kernel: read currents ``b*E`` + read uniform noise ``4E`` + read the spikes' gradient
  ``4E`` + write the currents' gradient ``b*E`` (the membrane and spikes are recomputed, not stored);
* scan: both kernels plus the noise draw's write ``4E``.

Achieved bandwidth = bytes / median time. For the eager reference the same byte count
gives an *effective* figure (it really moves several times more). As a practical ceiling,
each shape also times ``torch`` copying one float32 tensor of ``E`` elements (``8E`` bytes
read + written), and the kernels' bandwidth is given as a fraction of that copy's; on
CUDA also as a fraction of the nominal peak (``--peak-gbps``, default 3350 GB/s, the H100
SXM's HBM3 figure; pass the right one for another GPU). Times are the median and
the min-max over ``--repeats`` runs after ``--warmup`` runs (compilation happens in the
warm-up). The neuron is the default (escape noise, delta = 0.2, zero reset).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path

import torch

from spikeff.fileio import atomic_write
from spikeff.neurons import CompiledLIFScan, LIFParams, LIFState, draw_noise, lif_scan
from spikeff.provenance import device_name, git_commit
from spikeff.scan import fused_backward, fused_forward

REPO = Path(__file__).resolve().parents[1]
PRESETS = {
    # N-MNIST-sized conv layers at the default batch (32 inputs x 8 trials), and one wider layer.
    "cpu": [(10, 256, 16, 17, 17), (10, 256, 32, 8, 8), (10, 256, 32, 17, 17)],
    # GPU-sized: 8 trials x 256 inputs, 32 x 17 x 17 channels, and a larger one.
    "gpu": [(10, 2048, 32, 17, 17), (10, 2048, 64, 17, 17), (20, 1024, 64, 16, 16)],
}
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], object], device: torch.device, warmup: int, repeats: int) -> list[float]:
    for _ in range(warmup):
        fn()
    sync(device)
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync(device)
        out.append(time.perf_counter() - t0)
    return out


def kernel_bytes(shape: tuple[int, ...], current_bytes: int) -> tuple[float, float, float]:
    """(forward, backward, noise draw) bytes; see the module docstring."""
    e = 1
    for d in shape:
        e *= d
    state = 2 * 4 * e / shape[0]
    fwd = current_bytes * e + 4 * e + 4 * e + state
    bwd = current_bytes * e + 4 * e + 4 * e + current_bytes * e + state
    return fwd, bwd, 4 * e


def bench_shape(shape, precision, backends, device, warmup, repeats, seed=0):
    p = LIFParams()
    dtype = DTYPES[precision]
    g = torch.Generator(device=device).manual_seed(seed)
    currents = (torch.rand(shape, generator=g, device=device) * 1.5).to(dtype).requires_grad_()
    grad = torch.randn(shape, generator=g, device=device)
    fwd_b, bwd_b, noise_b = kernel_bytes(shape, currents.element_size())
    src, dst = torch.rand(shape, generator=g, device=device), torch.empty(shape, device=device)
    rows = [{"shape": shape, "precision": "-", "backend": "-", "what": "fp32 copy (reference)",
             "times": timed(lambda: dst.copy_(src), device, warmup, repeats), "bytes": 2 * src.numel() * 4}]
    for backend in backends:
        scan = lif_scan if backend == "eager" else CompiledLIFScan()

        def step(scan=scan) -> None:
            spikes, _ = scan(currents, p, g)
            spikes.backward(grad)
            currents.grad = None

        t = timed(step, device, warmup, repeats)
        if backend == "compiled" and scan.fallback_reason is not None:
            raise RuntimeError(f"torch.compile failed: {scan.fallback_reason}")
        rows.append({"shape": shape, "precision": precision, "backend": backend, "what": "scan fwd+bwd",
                     "times": t, "bytes": fwd_b + bwd_b + noise_b})
        if backend == "compiled":
            noise = draw_noise(shape, p, g, device)
            v0 = LIFState(torch.zeros(shape[1:], device=device))
            fwd = torch.compile(fused_forward, dynamic=True)
            bwd = torch.compile(fused_backward, dynamic=True)
            x = currents.detach()
            rows.append({"shape": shape, "precision": precision, "backend": backend, "what": "kernel fwd",
                         "times": timed(lambda fwd=fwd, x=x, noise=noise, v0=v0: fwd(x, noise, v0, p),
                                        device, warmup, repeats),
                         "bytes": fwd_b})
            rows.append({"shape": shape, "precision": precision, "backend": backend, "what": "kernel bwd",
                         "times": timed(lambda bwd=bwd, x=x, noise=noise, v0=v0: bwd(grad, (None,), x, noise, v0, p),
                                        device, warmup, repeats),
                         "bytes": bwd_b})
    return rows


def gbps(r) -> float:
    return r["bytes"] / statistics.median(r["times"]) / 1e9


def fmt_rows(rows, peak: float | None) -> list[str]:
    head = "| shape (T, N, C, H, W) | currents | scan | measured | median ms | min-max ms | GB/s | % of copy |"
    lines = [head + (" % of peak |" if peak else ""), "|---" * (8 + bool(peak)) + "|"]
    copy = None
    for r in rows:
        if "copy" in r["what"]:
            copy = gbps(r)
        med = statistics.median(r["times"])
        kernel = r["what"].startswith("kernel")
        cells = [str(tuple(r["shape"])), r["precision"], r["backend"], r["what"], f"{med * 1e3:.1f}",
                 f"{min(r['times']) * 1e3:.1f}-{max(r['times']) * 1e3:.1f}", f"{gbps(r):.1f}",
                 f"{100 * gbps(r) / copy:.0f}%" if kernel and copy else "-"]
        if peak:
            cells.append(f"{100 * gbps(r) / peak:.1f}%" if kernel or "copy" in r["what"] else "-")
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def speedups(rows) -> list[str]:
    out = []
    by = {(tuple(r["shape"]), r["precision"], r["backend"], r["what"]): statistics.median(r["times"]) for r in rows}
    for (shape, prec, backend, what), med in by.items():
        if backend == "compiled" and what == "scan fwd+bwd" and (shape, prec, "eager", what) in by:
            out.append(f"- {shape} {prec}: compiled scan {by[(shape, prec, 'eager', what)] / med:.1f}x faster "
                       "than eager (median over median)")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", choices=sorted(PRESETS), default="cpu")
    ap.add_argument("--shape", type=lambda s: tuple(int(v) for v in s.split(",")), action="append", default=None,
                    help="T,N,C,H,W (repeatable; replaces the preset)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--backends", default="eager,compiled")
    ap.add_argument("--precisions", default="fp32,bf16")
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--peak-gbps", type=float, default=3350.0,
                    help="GPU peak memory bandwidth in GB/s (default: H100 SXM, 3350)")
    ap.add_argument("--threads", type=int, default=None, help="CPU threads (default: all cores)")
    ap.add_argument("--out", default=None, help="write the markdown here (default: print only)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads or max(1, os.cpu_count() or 1))
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("lif_scan.py: --device cuda, but CUDA is not available")
    shapes = args.shape or PRESETS[args.preset]
    rows = []
    for shape in shapes:
        for precision in args.precisions.split(","):
            new = bench_shape(shape, precision, args.backends.split(","), device, args.warmup, args.repeats)
            for line in fmt_rows(new, None)[2:]:
                print(line, flush=True)
            rows += new
        if args.out:  # after every shape, so a run stopped by a time limit keeps what it measured
            atomic_write(Path(args.out), lambda f, rows=rows: f.write(render(rows, args, device)), mode="w")
    print(render(rows, args, device))


def render(rows: list[dict], args: argparse.Namespace, device: torch.device) -> str:
    peak = args.peak_gbps if device.type == "cuda" else None
    commit = git_commit(REPO)
    text = "\n".join([
        f"# LIF scan: forward + backward, {device.type.upper()}",
        "",
        f"- command: `PYTHONPATH=. python benchmarks/lif_scan.py {' '.join(sys.argv[1:])}`",
        f"- commit: {commit['commit']}" + (" (with uncommitted changes)" if commit["dirty"] else ""),
        f"- device: {device_name(device)}; torch {torch.__version__}, Python {platform.python_version()}",
        f"- date: {date.today().isoformat()}",
        f"- neuron: default LIFParams (delta 0.2, zero reset); {args.repeats} timed runs after {args.warmup} "
        "warm-up runs (compilation in the warm-up); median and min-max",
        "- bytes: see the docstring of `benchmarks/lif_scan.py` (minimum traffic of a fused kernel; "
        "eager GB/s are effective figures)",
        "",
        *fmt_rows(rows, peak),
        "",
        *speedups(rows),
        "",
    ])
    if peak:
        text += f"\n% of peak uses --peak-gbps {args.peak_gbps:g} GB/s.\n"
    return text


if __name__ == "__main__":
    main()
