"""spikeff-bench at tiny size: every output file and report key, the CLI, and clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from spikeff import bench
from spikeff.bench import BenchSettings, build_parser, main, run_bench, runner, settings_from_args
from spikeff.bench.settings import settings_key
from spikeff.config import RunConfig, flags, overrides

TINY_RUN = {"data.dataset": "digits", "data.limit": 24, "data.time_bins": 3, "train.epochs": 1,
            "eval.readout_epochs": 1, "network.conv_channels": (2,), "network.hidden": (4,), "train.trials": 2,
            "train.batch_size": 12}


def tiny(tmp_path: Path, **options) -> BenchSettings:
    run = overrides(RunConfig(), {**TINY_RUN, "runtime.cache_dir": str(tmp_path / "cache")})
    return BenchSettings(run=run, **{"seeds": 2, "trials_curve": (1, 2), "noise_levels": (0.0, 0.3), "isolate": False,
                                     **options})

FIGURES = ("frontier", "accuracy_vs_trials", "accuracy_vs_noise", "ed_per_layer", "probes_per_layer",
           "spike_raster", "label_efficiency")


def test_tiny_bench_writes_every_output_and_key(tmp_path: Path):
    out = tmp_path / "out"
    s = tiny(tmp_path, baseline_epochs=1)
    report = run_bench(s, out, command="test")
    on_disk = json.loads((out / "report.json").read_text())
    assert on_disk["methods"].keys() == {"spikeff", "bptt", "ff", "seed", "random", "linear"}
    for key in ("dataset", "device", "device_name", "commit", "date", "command", "settings", "data",
                "cost_models", "methods", "trials_curve", "noise_curve", "ed_history", "figures", "frontier"):
        assert key in on_disk, key
    assert on_disk["dataset"] == "digits" and on_disk["data"]["time_bins"] == 3
    n_test = on_disk["data"]["n_test"]
    for name, m in on_disk["methods"].items():
        acc = m["accuracy"]
        assert len(acc["per_seed"]) == (1 if name == "linear" else 2)
        assert acc["n_test"] == n_test and acc["ci95"][0] <= acc["median"] <= acc["ci95"][1]
        assert acc["ci95"] == pytest.approx(list(bench.wilson_interval(acc["median"], n_test)))
        assert m["synops_per_inference"] > 0 and m["synops_unfused_per_inference"] >= m["synops_per_inference"]
        assert set(m["energy_pj_per_inference"]) == {"cmos45", "cmos45-synaptic", "loihi"}
        assert all(v > 0 for v in m["energy_pj_per_inference"].values())
        assert m["peak_memory_mib"] > 0
        if name == "random":
            assert m["train_seconds"] is None
        else:
            assert m["train_seconds"] > 0 and m["samples_per_second"] > 0
            assert m["trial_samples_per_second"] >= m["samples_per_second"]
        if name != "linear":  # two layers and the head
            assert len(m["per_stage"]["synops"]) == 3 and len(m["per_stage"]["activation_sparsity"]) == 2
            assert all(0 <= a <= 1 for a in m["per_stage"]["activation_sparsity"])
    sf = on_disk["methods"]["spikeff"]
    assert set(sf["readout_modes"]) == {"energy", "deterministic"}
    assert sf["accuracy"] == sf["readout_modes"]["energy"]["accuracy"]
    assert sf["trial_samples_per_second"] == pytest.approx(2 * sf["samples_per_second"])
    # deterministic: one trial; energy: two trials share the first layer's synaptic op
    det, en = sf["readout_modes"]["deterministic"], sf["readout_modes"]["energy"]
    assert en["neuron_updates_per_inference"] == pytest.approx(2 * det["neuron_updates_per_inference"])
    assert en["random_draws_per_inference"] > 0 and det["random_draws_per_inference"] == 0
    assert on_disk["trials_curve"]["x"] == [1.0, 2.0]
    assert len(on_disk["trials_curve"]["energy"]) == 2
    assert 0.2 in on_disk["noise_curve"]["x"] or on_disk["network"]["lif"]["delta"] in on_disk["noise_curve"]["x"]
    assert "without retraining" in on_disk["noise_curve"]["method"]
    assert set(on_disk["ed_history"]["layer1"]) == {"consistency", "diversity"}
    for net in ("trained", "control"):  # input, layer 1, layer 2
        assert len(on_disk["probes"][net]["mean"]) == 3 and all(0 <= a <= 1 for a in on_disk["probes"][net]["mean"])
    le = on_disk["label_efficiency"]
    assert le["labels_per_class"] == ["1", "10", "100", "all"]
    rows = {(r["method"], r["representation"]): r for r in le["rows"]}
    assert {("spikeff", "layer 1"), ("spikeff", "layer 2"), ("spikeff", "all layers"), ("spikeff", "energy"),
            ("random", "layer 2"), ("linear", "raw counts"), ("bptt", "end to end"),
            ("ff", "end to end"), ("seed", "layer 2"), ("seed control", "layer 2")} <= rows.keys()
    assert len(rows["spikeff", "layer 2"]["k"]["1"]["clean"]["per_seed"]) == 2
    assert [(p["method"], p["representation"]) for p in le["paired"]][-1] == ("seed", "energy")
    names = {p["name"] for p in on_disk["frontier"]["points"]}
    assert {"spikeff n=1", "spikeff n=2", "spikeff deterministic", "bptt", "ff", "linear", "random n=2"} <= names
    assert set(on_disk["frontier"]["matched_bptt"]) == {"cmos45", "cmos45-synaptic", "loihi"}
    for f in FIGURES:
        assert (out / f"{f}.png").stat().st_size > 1000
        assert report["figures"][f] == f"{f}.png"
    md = (out / "report.md").read_text()
    for text in ("| spikeff/energy |", "frontier.png", "commit", "Linear probe per layer", "Energy-accuracy frontier",
                 "Label-efficient readouts",
                 "| linear | head |"):
        assert text in md, text
    for m in ("spikeff", "bptt", "ff", "seed", "linear"):
        assert (out / f"raw_{m}.json").exists()
    seed = json.loads((out / "raw_seed.json").read_text())
    assert seed["config"]["objective"] == "seed" and seed["network"]["lif"] == {"neuron": "relu"}
    assert seed["eval_trials"] == 1 and seed["trials"] > 1  # noiseless neurons: one test trial, not n copies
    assert on_disk["methods"]["seed"]["macs_per_inference"] > 0  # its graded outputs drive MACs


def test_results_are_kept_and_resumed_only_with_matching_settings(tmp_path: Path, monkeypatch):
    out = tmp_path / "out"
    s = tiny(tmp_path, seeds=1, methods=("linear",))
    first = run_bench(s, out)
    with pytest.raises(ValueError, match="already holds bench results"):
        run_bench(s, out)
    calls = []
    monkeypatch.setattr(runner, "run_method", lambda m, st: calls.append(m) or pytest.fail("should reuse"))
    again = run_bench(s, out, resume=True)
    assert calls == [] and again["methods"]["linear"]["accuracy"] == first["methods"]["linear"]["accuracy"]
    raw_path = out / "raw_linear.json"  # written before a setting existed, or when pool was one int
    raw = json.loads(raw_path.read_text())
    del raw["settings"]["run"]["data"]["tune"]
    raw["settings"]["run"]["network"]["pool"] = 2
    raw_path.write_text(json.dumps(raw))
    assert run_bench(s, out, resume=True)["methods"]["linear"]["accuracy"] == first["methods"]["linear"]["accuracy"]
    monkeypatch.undo()
    other = overrides(s, {"run.data.time_bins": 2})  # changed settings: refused, the saved result kept
    before = raw_path.read_bytes()
    with pytest.raises(ValueError, match=r"made with other settings: --time-bins 3 \(now 2\)"):
        run_bench(other, out, resume=True)
    assert raw_path.read_bytes() == before
    assert run_bench(other, out, resume=True, overwrite=True)["data"]["time_bins"] == 2


def test_every_spikeff_measurement_uses_the_eval_trials(tmp_path: Path):
    s = overrides(tiny(tmp_path, seeds=1, methods=("spikeff", "random")), {"run.eval.eval_trials": 3})
    report = run_bench(s, tmp_path / "out")
    raw = json.loads((tmp_path / "out" / "raw_spikeff.json").read_text())
    rec = raw["seeds"][0]
    assert raw["eval_trials"] == 3 and raw["trials"] == 2
    assert rec["ops"]["energy"] == rec["trials_curve"]["3"]["ops"]  # the reported accuracy's trial count
    assert report["methods"]["spikeff"]["trials"] == 3 and "3 trials" in report["noise_curve"]["method"]
    assert "random n=3" in {p["name"] for p in report["frontier"]["points"]}
    sf = report["methods"]["spikeff"]  # training throughput still counts the training trials
    assert sf["trial_samples_per_second"] == pytest.approx(2 * sf["samples_per_second"])


def test_select_bptt_picks_on_the_training_holdout_and_reports_its_curve(tmp_path: Path):
    from spikeff.baselines import select_bptt
    from spikeff.baselines.bptt import holdout_split
    from spikeff.data import load_splits
    from spikeff.network import NetworkConfig

    splits = load_splits("digits", limit=30, time_bins=3, cache_dir=str(tmp_path / "c"))
    cfg = NetworkConfig(input_shape=tuple(splits.frame_shape), n_classes=splits.n_classes, conv_channels=(2,))
    sel = select_bptt(cfg, splits.train, (1e-3, 1e-2), 4, batch_size=8)
    fit, held = holdout_split(len(splits.train), 0.2, 0)
    assert not set(fit) & set(held) and sorted(fit + held) == list(range(len(splits.train)))
    assert (sel["n_fit"], sel["n_holdout"]) == (len(fit), len(held))
    assert set(sel["curves"]) == {"0.001", "0.01"}
    assert all(len(c["holdout_accuracy"]) == 4 for c in sel["curves"].values())
    best = max(sel["curves"].values(), key=lambda c: c["last_quarter"])
    assert sel["lr"] == best["lr"] and sel["converged"] == best["converged"]
    assert holdout_split(len(splits.train), 0.2, 0) == (fit, held) != holdout_split(len(splits.train), 0.2, 1)


def test_cli_isolated_run_and_summary(tmp_path: Path, capsys):
    out = tmp_path / "cli"
    argv = ["--dataset", "digits", "--methods", "bptt", "--seeds", "1", "--limit", "16", "--epochs", "1",
            "--readout-epochs", "0", "--channels", "2", "--time-bins", "2", "--cache-dir", str(tmp_path / "c"),
            "--bptt-lrs", "0.5,1", "--bptt-epochs", "2", "--out", str(out)]
    assert main(argv) == 0
    report = json.loads((out / "report.json").read_text())
    assert list(report["methods"]) == ["bptt"] and report["methods"]["bptt"]["peak_memory_isolated"] is True
    assert report["methods"]["bptt"]["selection"]["lr"] in (0.5, 1.0)
    assert report["trials_curve"] is None and report["command"].startswith("spikeff-bench --dataset digits")
    text = capsys.readouterr().out
    assert "bptt" in text and "report.json" in text


def _parsed(*argv: str) -> BenchSettings:
    return settings_from_args(build_parser().parse_args(["--out", "o", *argv]))


def test_raw_results_of_a_pre_0_1_bench_are_refused_by_name(tmp_path: Path):
    """Raw results with flat settings (written before the settings tree) are not read; --overwrite replaces them."""
    path = tmp_path / "raw_spikeff.json"
    path.write_text(json.dumps({"settings": {"dataset": "digits", "seeds": 3, "epochs": None}}))
    key = settings_key(_parsed())
    with pytest.raises(ValueError, match="other settings: settings written by a pre-0.1 spikeff-bench"):
        runner._load_raw(path, key)
    assert runner._load_raw(path, key, overwrite=True) is None


def test_quick_fills_only_what_is_not_given():
    s = _parsed("--quick", "--epochs", "3", "--seeds", "3")
    assert s.run.train.epochs == 3 and s.seeds == 3
    assert s.run.data.limit == bench.QUICK["run.data.limit"] and s.run.network.conv_channels == (8, 16)
    full = _parsed()
    assert full.run == RunConfig() and full.seeds == 3 and full.trials_curve == (1, 2, 4, 8, 16)


def test_the_bench_takes_every_run_flag_but_those_it_sets_itself():
    options = {o for a in build_parser()._actions for o in a.option_strings}
    owned = {f.name for f in flags() if ("run", *f.path) in bench.settings.BENCH_OWNED}
    assert owned == {"--seed", "--control", "--checkpoint-minutes", "--num-workers"}
    assert {f.name for f in flags()} - owned <= options and not owned & options
    s = _parsed("--delta", "0.1", "--channels", "4,8", "--methods", "spikeff", "random", "--no-isolate")
    assert s.run.network.lif.delta == 0.1 and s.run.network.conv_channels == (4, 8)
    assert s.methods == ("spikeff", "random") and s.isolate is False
    assert s.run_config(2).seed == 2 and s.run_config(2).eval.control is True


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--dataset", "nmnist", "--data-dir", "/nonexistent/spikeff"], "spikeff-bench: error:"),
        (["--seeds", "0"], "--seeds must be >= 1"),
        (["--first-seed", "-1"], "--first-seed >= 0"),
        (["--trials-curve", "0,2"], "trials curve"),
    ],
)
def test_user_errors_exit_2_with_a_clear_message(tmp_path: Path, capsys, argv, message):
    assert main([*argv, "--out", str(tmp_path / "o"), "--cache-dir", str(tmp_path / "c")]) == 2
    assert message in capsys.readouterr().err


def test_unknown_method_is_rejected():
    with pytest.raises(ValueError, match="unknown methods"):
        BenchSettings(methods=("spikeff", "sgd"))


def test_readme_blocks_are_regenerated_from_the_report(tmp_path: Path):
    out = tmp_path / "results" / "run"
    s = tiny(tmp_path, seeds=1, methods=("linear",))
    report = run_bench(s, out, command="spikeff-bench tiny")
    readme = tmp_path / "README.md"
    readme.write_text("# x\n\n<!-- bench: results/run -->\nstale numbers\n<!-- /bench -->\n\ntail\n")
    assert bench.update_readme(readme) == ["results/run"]
    text = readme.read_text()
    assert "stale" not in text and text.endswith("<!-- /bench -->\n\ntail\n")
    assert "spikeff-bench tiny" in text and "| linear |" in text
    assert f"{report['methods']['linear']['accuracy']['median']:.3f}" in text
    readme.write_text("<!-- bench: results/missing -->\n<!-- /bench -->\n")
    with pytest.raises(ValueError, match="results/missing"):
        bench.update_readme(readme)


def test_seeds_run_apart_and_merged_equal_one_run_over_all_seeds(tmp_path: Path):
    s = tiny(tmp_path, methods=("spikeff", "random", "linear"))
    whole = run_bench(s, tmp_path / "whole")
    for first in (0, 1):
        run_bench(overrides(s, {"seeds": 1, "first_seed": first}), tmp_path / f"part{first}")
    merged = bench.merge_bench([tmp_path / "part1", tmp_path / "part0"], tmp_path / "merged")
    assert merged["settings"] == whole["settings"]
    assert [r["seed"] for r in merged["per_seed"]["spikeff"]] == [0, 1]
    assert [r["seed"] for r in merged["per_seed"]["linear"]] == [0]
    for key in ("methods", "label_efficiency", "probes", "trials_curve", "noise_curve"):
        assert _untimed(merged[key]) == _untimed(whole[key]), key
    resumed = run_bench(s, tmp_path / "merged", resume=True)  # the merged folder is that run's: nothing reruns
    assert resumed["methods"]["spikeff"]["accuracy"] == whole["methods"]["spikeff"]["accuracy"]


def _untimed(d):
    """``d`` without timings, peaks and commits (each run's own)."""
    if not isinstance(d, dict):
        return d
    return {k: _untimed(v) for k, v in d.items() if not any(w in k for w in ("second", "memory", "commit"))}


@pytest.mark.parametrize("parts, message", [
    ([{"first_seed": 0}, {"first_seed": 2}], r"seeds \[0\] and \[2\] leave a gap"),
    ([{"first_seed": 0, "seeds": 2}, {"first_seed": 1}], r"seeds \[0, 1\] and \[1\] overlap"),
    ([{"first_seed": 0}, {"first_seed": 1, "run.data.time_bins": 2}], r"ran other settings than .*--time-bins"),
])
def test_merge_refuses_folders_that_do_not_make_one_run(tmp_path: Path, parts, message):
    s = tiny(tmp_path, seeds=1, methods=("linear",))
    folders = [tmp_path / f"p{i}" for i in range(len(parts))]
    for part, folder in zip(parts, folders):
        run_bench(overrides(s, part), folder)
    with pytest.raises(ValueError, match=message):
        bench.merge_bench(folders, tmp_path / "merged")
    assert not (tmp_path / "merged" / "report.json").exists()


def test_merge_from_the_command_line_takes_no_settings(tmp_path: Path, capsys):
    argv = ["--out", str(tmp_path / "m"), "--merge", str(tmp_path / "a"), str(tmp_path / "b")]
    assert main([*argv, "--epochs", "2"]) == 2
    assert "--merge takes its settings from the merged folders; drop --epochs" in capsys.readouterr().err
    assert main(argv) == 2
    assert "no raw_<method>.json to merge" in capsys.readouterr().err
    assert main(["--out", str(tmp_path / "a"), "--merge", str(tmp_path / "a")]) == 2
    assert "is one of the merged folders" in capsys.readouterr().err


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads Linux's /proc")
def test_peak_memory_of_an_isolated_method_is_its_own():
    """A spawned child's ru_maxrss starts at its parent's RSS; the bench reads the child's own peak."""
    import concurrent.futures as cf
    import multiprocessing as mp

    import torch

    cpu = torch.device("cpu")
    ballast = bytearray(b"\x01") * (400 * 2**20)  # written: 400 MiB resident in this process
    with cf.ProcessPoolExecutor(1, mp_context=mp.get_context("spawn")) as pool:
        child = pool.submit(runner._peak_memory_mib, cpu).result()
    assert child < runner._peak_memory_mib(cpu) - 300 and len(ballast) > 0
