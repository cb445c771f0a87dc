"""spikeff-bench at tiny size: every output file and report key, the CLI, and clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from spikeff import bench
from spikeff.bench import BenchSettings, main, run_bench

TINY = dict(dataset="digits", limit=24, epochs=1, readout_epochs=1, channels=(2,), hidden=(4,), time_bins=3,
            seeds=2, trials=2, trials_curve=(1, 2), noise_levels=(0.0, 0.3), batch_size=12)
FIGURES = ("accuracy_vs_energy", "accuracy_vs_trials", "accuracy_vs_noise", "ed_per_layer", "probes_per_layer",
           "spike_raster")


def test_tiny_bench_writes_every_output_and_key(tmp_path: Path):
    out = tmp_path / "out"
    s = BenchSettings(**TINY, cache_dir=str(tmp_path / "cache"), isolate=False)
    report = run_bench(s, out, command="test")
    on_disk = json.loads((out / "report.json").read_text())
    assert on_disk["methods"].keys() == {"spikeff", "bptt", "ff", "random"}
    for key in ("dataset", "device", "device_name", "commit", "date", "command", "settings", "data",
                "cost_models", "methods", "trials_curve", "noise_curve", "ed_history", "figures"):
        assert key in on_disk, key
    assert on_disk["dataset"] == "digits" and on_disk["data"]["time_bins"] == 3
    for name, m in on_disk["methods"].items():
        assert set(m["accuracy"]) == {"mean", "std", "per_seed"} and len(m["accuracy"]["per_seed"]) == 2
        assert m["synops_per_inference"] > 0
        assert set(m["energy_pj_per_inference"]) == {"cmos45", "cmos45-synaptic", "loihi"}
        assert all(v > 0 for v in m["energy_pj_per_inference"].values())
        assert m["peak_memory_mib"] > 0
        assert len(m["spikes_per_layer"]) == 2
        if name == "random":
            assert m["train_seconds"] is None
        else:
            assert m["train_seconds"] > 0 and m["samples_per_second"] > 0
    sf = on_disk["methods"]["spikeff"]
    assert set(sf["readout_modes"]) == {"energy", "average", "deterministic"}
    assert sf["accuracy"] == sf["readout_modes"]["energy"]["accuracy"]
    # deterministic: one trial; energy: two trials share the first layer's synaptic op
    det, en = sf["readout_modes"]["deterministic"], sf["readout_modes"]["energy"]
    assert en["neuron_updates_per_inference"] == pytest.approx(2 * det["neuron_updates_per_inference"])
    # FF pays for one pass per label
    assert on_disk["methods"]["ff"]["trials"] == 10
    assert on_disk["trials_curve"]["x"] == [1.0, 2.0]
    assert len(on_disk["trials_curve"]["energy"]["mean"]) == 2
    assert 0.2 in on_disk["noise_curve"]["x"] or on_disk["network"]["lif"]["delta"] in on_disk["noise_curve"]["x"]
    assert "without retraining" in on_disk["noise_curve"]["method"]
    assert set(on_disk["ed_history"]["layer1"]) == {"consistency", "diversity"}
    for net in ("trained", "control"):  # input, layer 1, layer 2
        assert len(on_disk["probes"][net]["mean"]) == 3 and all(0 <= a <= 1 for a in on_disk["probes"][net]["mean"])
    assert "Linear probe per layer" in (out / "report.md").read_text()
    for f in FIGURES:
        assert (out / f"{f}.png").stat().st_size > 1000
        assert report["figures"][f] == f"{f}.png"
    md = (out / "report.md").read_text()
    assert "| spikeff/energy |" in md and "accuracy_vs_energy.png" in md and "commit" in md


def test_cli_isolated_run_and_summary(tmp_path: Path, capsys):
    out = tmp_path / "cli"
    argv = ["--dataset", "digits", "--methods", "bptt", "--seeds", "1", "--limit", "16", "--epochs", "1",
            "--readout-epochs", "0", "--channels", "2", "--time-bins", "2", "--cache-dir", str(tmp_path / "c"),
            "--out", str(out)]
    assert main(argv) == 0
    report = json.loads((out / "report.json").read_text())
    assert list(report["methods"]) == ["bptt"] and report["methods"]["bptt"]["peak_memory_isolated"] is True
    assert report["trials_curve"] is None and report["command"].startswith("spikeff-bench --dataset digits")
    text = capsys.readouterr().out
    assert "bptt" in text and "report.json" in text


def test_quick_fills_only_what_is_not_given():
    s = BenchSettings(quick=True, epochs=3).resolved()
    assert s.epochs == 3 and s.limit == bench.QUICK["limit"] and s.seeds == bench.QUICK["seeds"]
    full = BenchSettings().resolved()
    assert full.limit is None and full.seeds == 3 and full.trials_curve == (1, 2, 4, 8, 16)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--dataset", "nmnist", "--data-dir", "/nonexistent/spikeff"], "spikeff-bench: error:"),
        (["--seeds", "0"], "--seeds must be >= 1"),
        (["--trials-curve", "0,2"], "trials curve"),
    ],
)
def test_user_errors_exit_2_with_a_clear_message(tmp_path: Path, capsys, argv, message):
    assert main([*argv, "--out", str(tmp_path / "o"), "--cache-dir", str(tmp_path / "c")]) == 2
    assert message in capsys.readouterr().err


def test_unknown_method_is_rejected():
    with pytest.raises(ValueError, match="unknown methods"):
        BenchSettings(methods=("spikeff", "sgd"))
