"""The settings tree: every field is a flag, and a saved config reads back equal."""

from __future__ import annotations

import json
from dataclasses import fields, is_dataclass

import pytest

from spikeff.cli import build_parser
from spikeff.config import DataConfig, RunConfig, flags, from_args, from_dict, overrides, to_dict
from spikeff.network import NetworkConfig


def _leaf_paths(cls: type, path: tuple[str, ...] = ()) -> set[tuple[str, ...]]:
    out = set()
    for f in fields(cls):
        t = type(getattr(cls(), f.name))
        out |= _leaf_paths(t, path + (f.name,)) if is_dataclass(t) else {path + (f.name,)}
    return out


def _train_actions() -> dict[str, object]:
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    return {opt: a for a in sub.choices["train"]._actions for opt in a.option_strings}


def test_every_field_is_a_train_flag_with_help():
    actions = _train_actions()
    data_only = {("network", "input_shape"), ("network", "n_classes")}  # filled in from the data
    assert {f.path for f in flags()} == _leaf_paths(RunConfig) - data_only
    for f in flags():
        assert f.name in actions, f"{'.'.join(f.path)} has no flag"
        assert actions[f.name].dest == f.dest
        assert actions[f.name].help, f"{f.name} has no help text"
        assert actions[f.name].default == f.default


def test_flag_names_are_unique():
    names = [f.name for f in flags()]
    assert len(names) == len(set(names))


def _parsed(argv: list[str]) -> RunConfig:
    return from_args(build_parser().parse_args(["train", *argv]))


def test_flags_reach_the_tree():
    c = _parsed(["--channels", "8,16", "--delta", "0.1", "--no-control", "--readout-lrs", "0.1,0.01",
                 "--schedule", "greedy", "--alpha", "0.3", "--dataset", "nmnist", "--device", "cpu"])
    assert c.network.conv_channels == (8, 16) and c.network.lif.delta == 0.1
    assert c.eval.control is False and c.eval.readout_lrs == (0.1, 0.01) and c.train.schedule == "greedy"
    assert c.train.loss.alpha == 0.3 and c.data.dataset == "nmnist"
    assert _parsed([]) == RunConfig()


def test_saved_config_round_trips():
    c = overrides(RunConfig(), {"seed": 3, "network.conv_channels": (4, 8), "network.lif.delta": 0.0,
                                "data.limit": 100, "runtime.data_dir": "/tmp/x", "train.loss.supervised": True})
    back = from_dict(RunConfig, json.loads(json.dumps(to_dict(c))))
    assert back == c and back.network.conv_channels == (4, 8)
    bound = c.network.for_data((2, 34, 34), 10)
    assert from_dict(NetworkConfig, json.loads(json.dumps(to_dict(bound)))) == bound


def test_missing_keys_take_defaults_and_bad_ones_are_refused():
    assert from_dict(RunConfig, {"train": {"epochs": 5}}).train.epochs == 5
    with pytest.raises(ValueError, match="unknown setting.*train.epoch"):
        from_dict(RunConfig, {"train": {"epoch": 5}})
    with pytest.raises(ValueError, match="train.epochs: expected int"):
        from_dict(RunConfig, {"train": {"epochs": "5"}})
    with pytest.raises(ValueError, match="train.loss.form: expected one of"):
        from_dict(RunConfig, {"train": {"loss": {"form": "ratio"}}})
    with pytest.raises(ValueError, match="alpha must be in"):
        from_dict(RunConfig, {"train": {"loss": {"alpha": 2.0}}})
    with pytest.raises(ValueError, match="dataset must be one of"):
        DataConfig(dataset="mnist")
    with pytest.raises(ValueError, match="unknown setting train.nope"):
        overrides(RunConfig(), {"train.nope": 1})


def test_pool_per_conv_layer_and_the_one_number_form():
    from spikeff.network import SpikingNet

    c = _parsed(["--channels", "4,8,8", "--pool", "2,2,1"]).network
    assert c.pool == (2, 2, 1) and c.pools == (2, 2, 1)
    assert _parsed(["--channels", "4,8,8", "--pool", "2"]).network.pools == (2, 2, 2)
    net = SpikingNet(c.for_data((2, 16, 16), 3))
    assert net.head.fc.in_features == 8 * 4 * 4  # 16 -> 8 -> 4 -> 4
    old = from_dict(RunConfig, {"network": {"pool": 2}})  # configs saved when pool was one int
    assert old.network.pool == (2,) and NetworkConfig(pool=3).pool == (3,)
    with pytest.raises(ValueError, match="one per conv layer"):
        NetworkConfig(conv_channels=(4, 8, 8), pool=(2, 2))
    with pytest.raises(ValueError, match="shrink input"):
        NetworkConfig((2, 16, 16), 3, conv_channels=(4, 8, 8), pool=(4, 4, 2))


def test_a_config_as_0_1_saved_it_reads_back_with_its_run_settings_moved():
    """Version 0.1 kept the seed, the readout and the evaluation settings under ``train``."""
    saved = to_dict(RunConfig())
    train = saved.pop("train")
    saved.pop("eval"), saved.pop("seed")
    saved["train"] = {**train, "seed": 4, "control": False, "eval_trials": 5, "readout_epochs": 2,
                      "readout_lrs": [0.1], "label_draws": 2}
    c = from_dict(RunConfig, json.loads(json.dumps(saved)))
    assert c.seed == 4 and c.eval.control is False and c.eval.eval_trials == 5 and c.test_trials == 5
    assert c.eval.readout_epochs == 2 and c.eval.readout_lrs == (0.1,) and c.train == RunConfig().train
    assert c.eval.label_draws == 2
    with pytest.raises(ValueError, match="eval_trials must be >= 1"):
        from_dict(RunConfig, {"train": {"eval_trials": 0}})


def test_train_config_holds_only_what_the_loop_reads():
    from spikeff.trainer import TrainConfig

    run_level = {"seed", "control", "eval_trials", "readout_epochs", "readout_lrs", "label_draws"}
    assert not run_level & {f.name for f in fields(TrainConfig)}
