"""Resident memory of the bench's spikeff process, stage by stage: ``run_method("spikeff")`` on N-MNIST
(default layers, one seed, ``--trials-curve 8 --noise-levels 0.2``, untrained control), with a thread
that samples ``/proc/self/statm`` every 20 ms and keeps the highest value per stage. Linux only.

    OMP_NUM_THREADS=1 python benchmarks/results/eval_memory/bench_stages.py ../shared/data
"""

import functools
import json
import sys
import threading
import time
from dataclasses import replace

import torch

import spikeff.bench.runner as runner
import spikeff.experiment as experiment
import spikeff.label_efficiency as label_efficiency
from spikeff.bench.settings import BenchSettings

stage, peaks = ["start"], {}


def sample() -> None:
    while True:
        rss = int(open("/proc/self/statm").read().split()[1]) * 4096 / 2**20
        peaks[stage[0]] = max(peaks.get(stage[0], 0.0), rss)
        time.sleep(0.02)


def traced(module, name: str, label: str) -> None:
    """Name the stage while ``module.name`` runs (``label#i`` for its i-th call), ``after label#i`` after."""
    f, calls = getattr(module, name), [0]

    @functools.wraps(f)
    def g(*args, **kwargs):
        i, calls[0] = calls[0], calls[0] + 1
        stage[0] = f"{label}#{i}"
        try:
            return f(*args, **kwargs)
        finally:
            stage[0] = f"after {label}#{i}"

    setattr(module, name, g)


def main(data_dir: str) -> None:
    torch.set_num_threads(1)
    threading.Thread(target=sample, daemon=True).start()
    for name in ("train_and_evaluate", "evaluate", "untrained_control", "label_efficiency", "_raster"):
        traced(runner, name, name)
    traced(experiment, "evaluate", "run.evaluate")
    traced(experiment, "fit_readout", "run.fit_readout")
    traced(label_efficiency, "frozen_features", "features")
    traced(label_efficiency, "linear_curve", "linear readouts")
    traced(label_efficiency, "energy_curve", "energy readouts")
    s = BenchSettings()
    s = replace(s, seeds=1, methods=("spikeff", "random"), trials_curve=(8,), noise_levels=(0.2,),
                run=replace(s.run, data=replace(s.run.data, dataset="nmnist"),
                            runtime=replace(s.run.runtime, data_dir=data_dir)))
    out = runner.run_method("spikeff", s)
    rec = out["seeds"][0]
    le = rec["label_efficiency"]["results"]
    print(json.dumps({"peak_mib_per_stage": {k: round(v) for k, v in peaks.items()},
                      "peak_memory_mib": round(out["peak_memory_mib"]), "commit": out.get("commit"),
                      "accuracy": rec["accuracy"], "control": rec["control"]["accuracy"],
                      "top layer k=10, trained / control": [le[n]["layer 2"]["10"]["clean"]["mean"]
                                                            for n in ("trained", "control")]}, indent=1))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "../shared/data")
