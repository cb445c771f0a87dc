"""Is the thinned-digit margin only gain? The quickstart's readouts with and without each input's
features divided by their sum (L1), for the trained net, its untrained control and the raw counts.

If dividing by the sum (which removes any overall rate level) gives the control the trained net's
thinned accuracy, the margin is the layers' gain; if not, the trained features differ in pattern too.
Usage: python normalised.py RUN_DIR (a `spikeff train --quickstart --out RUN_DIR`).
"""

import sys
from pathlib import Path

import numpy as np
import torch
from rates import load_run  # this folder's

from spikeff.label_efficiency import COMPACT_C, DRAWS, labelled_draws, linear_curve, view_features
from spikeff.probe import frozen_features

run = Path(sys.argv[1])
config, net, ctrl, train, test = load_run(run)
trials = config.test_trials


def l1(a: np.ndarray) -> np.ndarray:
    return a / np.maximum(a.sum(1, keepdims=True), 1e-9)


nets = {"trained": net, "control": ctrl}
reps = {}
for j, (name, n) in enumerate(nets.items()):
    f_train = frozen_features(n, train, trials, torch.Generator().manual_seed(10 + 3 * j))
    f_test = view_features(n, test, ["clean", "thinned"], trials, config.seed, 10 + 3 * j + 1, keep_trials=False)
    reps[f"{name} top layer"] = (f_train.layers[-1], {v: f.layers[-1] for v, f in f_test.items()})
    if j == 0:
        y, y_test = f_train.labels, f_test["clean"].labels
        reps["raw counts"] = (f_train.layers[0], {v: f.layers[0] for v, f in f_test.items()})
n_draws = config.eval.label_draws or DRAWS  # a run with --label-draws 0: the default number
draws = labelled_draws(y, (10, None), n_draws, torch.Generator().manual_seed(config.seed))
print(f"{run}: seed {config.seed}, C = {COMPACT_C}, {n_draws} draws at k = 10; mean accuracy")
print(f"{'features':22s} {'scaling':10s} {'clean k=10':>10s} {'thinned k=10':>12s} "
      f"{'clean all':>9s} {'thinned all':>11s}")
for name, (a, tests) in reps.items():
    for scaling, f in (("as is", lambda x: x), ("/ sum", l1)):
        c = linear_curve(f(a), y, {v: f(t) for v, t in tests.items()}, y_test, draws, config.seed, (COMPACT_C,))
        print(f"{name:22s} {scaling:10s} {c['10']['clean']['mean']:10.3f} {c['10']['thinned']['mean']:12.3f} "
              f"{c['all']['clean']['mean']:9.3f} {c['all']['thinned']['mean']:11.3f}")
