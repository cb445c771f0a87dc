import json
import weakref

import numpy as np
import torch
from test_probe import toy_batches

import spikeff.label_efficiency as le
from spikeff.cli import main
from spikeff.network import NetworkConfig, SpikingNet


def _blobs(n_per_class: int, seed: int, n_classes: int = 4, dims: int = 30):
    """Features that carry the label (class means 3 apart in the first dims) plus pure noise."""
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(n_classes), n_per_class)
    informative = rng.normal(size=(len(y), dims)) + 3.0 * np.eye(n_classes, dims)[y]
    return informative, rng.normal(size=(len(y), dims)), y


def test_informative_features_beat_random_ones_at_ten_labels():
    train, train_rand, y = _blobs(40, 0)
    test, test_rand, y_test = _blobs(50, 1)
    draws = le.labelled_draws(y, (10,), 3, torch.Generator().manual_seed(0))
    good = le.linear_curve(train, y, {"clean": test}, y_test, draws)["10"]["clean"]
    bad = le.linear_curve(train_rand, y, {"clean": test_rand}, y_test, draws)["10"]["clean"]
    assert good["mean"] > 0.7 and bad["mean"] < 0.4 and len(good["per_draw"]) == 3
    assert good["min"] <= good["mean"] <= good["max"]


def test_draws_are_reproducible_per_seed_and_stratified():
    y = np.repeat(np.arange(3), [5, 20, 20])
    a = le.labelled_draws(y, (1, 10, None), 4, torch.Generator().manual_seed(7))
    b = le.labelled_draws(y, (1, 10, None), 4, torch.Generator().manual_seed(7))
    c = le.labelled_draws(y, (1, 10, None), 4, torch.Generator().manual_seed(8))
    assert all(np.array_equal(i, j) for k in a for i, j in zip(a[k], b[k]))
    assert any(not np.array_equal(i, j) for i, j in zip(a["10"], c["10"]))
    assert all(np.bincount(y[i]).tolist() == [1, 1, 1] for i in a["1"])
    assert all(np.bincount(y[i]).tolist() == [5, 10, 10] for i in a["10"])  # class 0 has only 5: all of them
    assert len(a["all"]) == 1 and len(a["all"][0]) == len(y)
    assert len(le.labelled_draws(y, (50,), 4, torch.Generator())["50"]) == 1  # above every class: one set of all


def test_robustness_views_change_the_inputs():
    x, _ = toy_batches(1, 0)[0]
    x = x * 3  # counts above one, so thinning has something to halve
    for name, p in le.VIEWS.items():
        (moved, _), = le.perturbed([(x, None)], p, torch.Generator().manual_seed(0))
        assert moved.shape == x.shape
        assert torch.equal(moved, x) == (name == "clean")
    (thin, _), = le.perturbed([(x, None)], le.VIEWS["thinned"], torch.Generator().manual_seed(0))
    assert 0.3 < thin.sum() / x.sum() < 0.7


def test_label_efficiency_of_nets_and_raw_counts():
    cfg = NetworkConfig((2, 8, 8), 2, conv_channels=(4,), hidden=(6,))
    nets = {"trained": SpikingNet(cfg, torch.Generator().manual_seed(0)),
            "control": SpikingNet(cfg, torch.Generator().manual_seed(1))}
    res = le.label_efficiency(nets, toy_batches(3, 0), toy_batches(2, 1), 2, ks=(1, None), draws=2,
                              per_layer=True, energy=le.EnergyFit(epochs=1, lr=1e-2, batch_size=8))
    r = res["results"]
    assert list(r) == ["trained", "control", "raw counts"]
    assert set(r["trained"]) == {"layer 1", "layer 2", "all layers", "energy"}
    assert r["raw counts"]["input"]["all"]["clean"]["mean"] == 1.0  # the toy input is linearly separable
    assert r["trained"]["layer 1"]["1"]["n_labelled"] == [2, 2]
    assert set(r["control"]["energy"]["all"]) == {"n_labelled", "clean", "shifted", "thinned"}
    again = le.label_efficiency(nets, toy_batches(3, 0), toy_batches(2, 1), 2, ks=(1, None), draws=2, per_layer=True,
                                energy=le.EnergyFit(epochs=1, lr=1e-2, batch_size=8))
    assert again.pop("seconds") > 0 and res.pop("seconds") > 0 and again == res  # every draw is seeded
    assert "raw counts input" in le.label_table(res) and "thinned all" in le.label_table(res)


def test_readouts_free_each_nets_features_before_the_next_are_made():
    train, _, y = _blobs(10, 0)
    test, _, y_test = _blobs(10, 1)
    alive = []

    def kept(f: np.ndarray) -> np.ndarray:
        alive.append(weakref.ref(f))
        return f

    def features():
        for name in ("trained", "control"):
            assert all(ref() is None for ref in alive)  # the nets read out before hold nothing any more
            yield name, (le.FrozenFeatures([train[:, :5], kept(train.copy())], y, None),
                         {"clean": le.FrozenFeatures([test[:, :5], test], y_test, None)})

    res = le.label_readouts(dict.fromkeys(("trained", "control")), features(), "blobs", ks=(2,), draws=2, cs=(1.0,))
    assert list(res["results"]) == ["trained", "control", "raw counts"] and len(alive) == 2
    assert res["results"]["trained"] == res["results"]["control"]  # same features, same draws


def test_train_run_reports_label_efficiency(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--dataset", "digits", "--cache-dir", str(tmp_path / "cache"), "--out", str(out),
                 "--limit", "40", "--epochs", "1", "--readout-epochs", "1", "--channels", "4,4", "--trials", "2",
                 "--time-bins", "4", "--batch-size", "16", "--label-draws", "2"]) == 0
    rec = json.loads((out / "metrics.json").read_text())["label_efficiency"]
    assert rec["labels_per_class"] == ["10", "all"] and rec["draws"] == 2 and list(rec["views"]) == ["clean", "thinned"]
    assert set(rec["results"]["trained"]) == {"layer 2", "all layers", "energy"}
    assert set(rec["results"]) == {"trained", "control", "raw counts"}
    for curve in (rec["results"]["trained"]["energy"], rec["results"]["raw counts"]["input"]):
        assert set(curve["10"]) == {"n_labelled", "clean", "thinned"}
    # half the events: the raw counts' standardised readout, fitted on clean inputs, scores otherwise
    raw = rec["results"]["raw counts"]["input"]["all"]
    assert raw["thinned"] != raw["clean"]
    printed = capsys.readouterr().out
    assert "Compare trained with control at k=10" in printed and "thinned k=10" in printed
