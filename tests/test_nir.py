"""NIR export/import: graph structure, exact equivalence with snntorch and norse, Loihi quantisation, errors."""

from __future__ import annotations

import nir
import numpy as np
import pytest
import torch
from helpers import real_data_dir

from spikeff.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from spikeff.network import NetworkConfig, SpikingNet
from spikeff.neurons import LIFParams
from spikeff.nir import (
    NIRExportError,
    NIRImportError,
    export_nir,
    from_nir,
    quantize_loihi,
    reference_outputs,
    verify_nir,
)


def make_net(readout: str = "linear", input_shape=(2, 16, 16), channels=(4, 8), hidden=(16,), seed: int = 0,
             lif: LIFParams | None = None, gain: float = 3.0, norm: str = "none", pool=(2,)) -> SpikingNet:
    """A tiny net; weights scaled by ``gain`` so that every layer spikes."""
    cfg = NetworkConfig(input_shape, 4, conv_channels=channels, hidden=hidden, pool=pool,
                        lif=lif or LIFParams(beta=0.9, threshold=1.0), readout=readout, norm=norm)
    net = SpikingNet(cfg, torch.Generator().manual_seed(seed))
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(gain)
    return net.eval()


def random_spikes(net: SpikingNet, t: int = 12, b: int = 3, rate: float = 0.3, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand((t, b, *net.config.input_shape), generator=g) < rate).float()


def assert_active(net: SpikingNet, x: torch.Tensor) -> None:
    """Guard against vacuous equality: every layer must spike, and not saturate."""
    for i, s in enumerate(reference_outputs(net, x)[:-1]):
        assert 0.005 < s.mean().item() < 0.9, f"layer {i} rate {s.mean().item():.3f}"


def assert_zero_mismatch(res: dict) -> None:
    for name, r in res.items():
        assert r["layers"] == [0] * len(r["layers"]) and r["output"] == 0, f"{name}: {r}"


# ----------------------------------------------------------------------------- graph


def test_graph_structure_and_file(tmp_path):
    net = make_net("lif")
    path = tmp_path / "m.nir"
    export_nir(net, path, dt=2e-3)
    g = nir.read(path)  # type-checked
    assert [type(g.nodes[k]).__name__ for k in ("input", "conv0", "pool0", "lif0", "conv1", "pool1", "lif1",
                                                "flatten", "fc2", "lif2", "readout", "readout_lif", "output")] == [
        "Input", "Conv2d", "SumPool2d", "LIF", "Conv2d", "SumPool2d", "LIF", "Flatten", "Affine", "LIF",
        "Affine", "LIF", "Output"]
    assert list(g.nodes["input"].input_type["input"]) == [2, 16, 16]  # no batch dimension
    assert g.nodes["flatten"].start_dim == 0
    lif = g.nodes["lif0"]
    assert lif.tau.shape == (4, 8, 8) and lif.v_threshold.shape == (4, 8, 8)  # per-neuron arrays
    beta, dt = 0.9, 2e-3
    np.testing.assert_allclose(lif.tau, dt / (1 - beta), rtol=1e-6)
    np.testing.assert_allclose(lif.r, 1 / (1 - beta), rtol=1e-6)
    assert np.all(lif.v_leak == 0) and np.all(lif.v_reset == 0)
    # v > v_threshold in float32 is exactly spikeff's v >= threshold
    assert np.all(lif.v_threshold < np.float32(1.0)) and np.all(np.nextafter(lif.v_threshold, np.float32(2)) == 1.0)
    # forward Euler of tau dv/dt = -v + r I reproduces v' = beta v + I
    v, i = 0.37, 0.81
    euler = v + dt / lif.tau.flat[0] * (-v + lif.r.flat[0] * i)
    assert euler == pytest.approx(beta * v + i, rel=1e-6)
    # the conv weights carry the 1/p^2 of the sum pooling, exactly
    np.testing.assert_array_equal(g.nodes["conv0"].weight, net.layers[0].synapse.weight.detach().numpy() / 4)
    np.testing.assert_array_equal(g.nodes["fc2"].bias, net.layers[2].synapse.bias.detach().numpy())
    m = g.metadata
    assert m["source"] == "spikeff" and float(m["dt"]) == dt and float(m["delta"]) == 0.2
    assert m["readout"] == "lif"


def test_avg_pooling_and_fold_r():
    net = make_net()
    g = export_nir(net, pooling="avg")
    assert isinstance(g.nodes["pool0"], nir.AvgPool2d)
    np.testing.assert_array_equal(g.nodes["conv0"].weight, net.layers[0].synapse.weight.detach().numpy())
    f = export_nir(net, fold_r=True)
    assert np.all(f.nodes["lif2"].r == 1)
    np.testing.assert_allclose(f.nodes["fc2"].weight, net.layers[2].synapse.weight.detach().numpy() * 10, rtol=1e-6)


# ----------------------------------------------------------------------------- equivalence


@pytest.mark.parametrize("readout,pool", [("linear", (2,)), ("lif", (2,)), ("linear", (2, 1))])
@pytest.mark.parametrize("pooling", ["sum", "avg"])
def test_round_trip_identical(tmp_path, readout, pool, pooling):
    net = make_net(readout, lif=LIFParams(beta=0.8, threshold=0.7, delta=0.1, sigma=0.05), pool=pool)
    path = tmp_path / "m.nir"
    export_nir(net, path, dt=5e-4, pooling=pooling)
    back = from_nir(path)
    assert back.config == net.config
    for a, b in zip(net.state_dict().values(), back.state_dict().values()):
        assert torch.equal(a, b)
    x = random_spikes(net)
    assert_active(net, x)
    for a, b in zip(reference_outputs(net, x), reference_outputs(back, x)):
        assert torch.equal(a, b)
    assert torch.equal(net(x, trials=1, deterministic=True), back(x, trials=1, deterministic=True))


def test_batch_norm_is_folded_into_the_synapses(tmp_path):
    net = make_net(norm="batch", gain=1.0).train()
    x = random_spikes(net)
    with torch.no_grad():
        for layer in net.layers:  # running statistics far from (0, 1), as a trained net's are
            layer.norm.running_mean.uniform_(-0.5, 0.5, generator=torch.Generator().manual_seed(0))
            layer.norm.running_var.uniform_(0.05, 0.3, generator=torch.Generator().manual_seed(1))
    net.eval()
    path = tmp_path / "bn.nir"
    export_nir(net, path)
    back = from_nir(path)
    assert back.config.norm == "none" and all(layer.norm is None for layer in back.layers)
    assert_active(net, x)
    with torch.no_grad():  # the folded file gives the evaluated net's deterministic outputs
        torch.testing.assert_close(net(x, deterministic=True), back(x, deterministic=True))
    assert_zero_mismatch(verify_nir(path, net, x))


@pytest.mark.parametrize("readout", ["linear", "lif"])
def test_snntorch_and_norse_agree_on_random_spikes(tmp_path, readout):
    net = make_net(readout, seed=3)
    path = tmp_path / "m.nir"
    export_nir(net, path)
    x = random_spikes(net, t=15, b=3)
    assert_active(net, x)
    res = verify_nir(path, net, x)
    assert set(res) == {"spikeff", "snntorch", "norse"}
    assert_zero_mismatch(res)
    assert all(r["output_max_abs"] == 0.0 for r in res.values()) or readout == "linear"


def test_hidden_only_network(tmp_path):
    net = make_net("lif", input_shape=(1, 6, 6), channels=(), hidden=(20, 12))
    export_nir(net, tmp_path / "m.nir")
    x = random_spikes(net, t=10, b=2)
    assert_active(net, x)
    assert_zero_mismatch(verify_nir(tmp_path / "m.nir", net, x))


def _nmnist_frames(t: int = 15) -> torch.Tensor:
    root = real_data_dir()
    files = sorted((root / "NMNIST" / "Train" / "3").glob("*.bin"))
    if not files:
        pytest.skip(f"no N-MNIST samples under {root}/NMNIST/Train (set SPIKEFF_DATA to the shared data folder)")
    import tonic

    from spikeff.data.transforms import ToFrameBins

    ev = tonic.io.read_mnist_file(str(files[0]), dtype=tonic.datasets.NMNIST.dtype)
    frames = ToFrameBins((34, 34, 2), t)(ev)
    return torch.from_numpy(frames.astype(np.float32)).unsqueeze(1)  # (T, 1, 2, 34, 34)


def test_real_nmnist_sample(tmp_path):
    x = _nmnist_frames()
    net = make_net("lif", input_shape=(2, 34, 34), channels=(4, 8), hidden=(16,), seed=5, gain=1.5)
    path = tmp_path / "m.nir"
    export_nir(net, path)
    assert_active(net, x)
    assert_zero_mismatch(verify_nir(path, net, x))


# ----------------------------------------------------------------------------- Loihi


def test_quantize_loihi(tmp_path):
    net = make_net("lif", lif=LIFParams(beta=0.9, threshold=1.0))
    q, info = quantize_loihi(net)
    assert info.decay_int == round(0.1 * 4096)
    for m in q.neurons():  # the spiking head too
        assert m.lif.beta == 1 - info.decay_int / 4096
    assert q.head.lif.threshold == info.threshold_int[-1] * 2.0 ** info.weight_exp[-1]
    for j, (name, wi, e) in enumerate(zip(info.names, info.weight_int, info.weight_exp)):
        assert wi.min() >= -128 and wi.max() <= 127 and np.abs(wi).max() >= 64  # exponent is the tightest
        syn = (q.head.fc if name == "readout"
               else q.layers[int(name[4:] if name.startswith("conv") else name[2:])].synapse)
        np.testing.assert_array_equal(syn.weight.detach().numpy(), (wi * 2.0**e).astype(np.float32))
        assert info.threshold_int[j] * 2.0**e == pytest.approx(1.0, abs=2.0**e)
    assert all(isinstance(s, (int, np.integer)) for s in info.weight_exp)
    # original untouched
    assert net.layers[0].lif.beta == 0.9
    path = tmp_path / "q.nir"
    export_nir(net, path, quantize="loihi")
    g = nir.read(path)
    md = g.nodes["conv0"].metadata
    np.testing.assert_array_equal(md["weight_int"].astype(np.float64) * 2.0 ** int(md["weight_exp"]),
                                  g.nodes["conv0"].weight)
    assert int(g.nodes["lif0"].metadata["decay_int"]) == info.decay_int
    assert float(g.metadata["beta"]) == q.layers[0].lif.beta != net.layers[0].lif.beta  # the neurons as they run
    np.testing.assert_array_equal(g.metadata["threshold"], [m.lif.threshold for m in q.neurons()])
    x = random_spikes(net, t=15)
    assert_active(q, x)
    assert_zero_mismatch(verify_nir(path, q, x))
    back = from_nir(path)
    for a, b in zip(reference_outputs(q, x), reference_outputs(back, x)):
        assert torch.equal(a, b)


def test_quantize_loihi_refuses_neurons_with_different_decays():
    net = make_net("lif", lif=LIFParams(beta=0.9, threshold=1.0))
    net.head.lif = LIFParams(beta=0.8, threshold=1.0)  # as an imported net's head may
    with pytest.raises(NIRExportError, match=r"one decay for every neuron.*\[0\.8, 0\.9\]"):
        quantize_loihi(net)


def test_checkpoint_keeps_per_layer_neurons(tmp_path):
    q = make_net("lif", lif=LIFParams(beta=0.9, threshold=1.0))
    for i, m in enumerate(q.neurons()):  # as a quantised or imported net's neurons may
        m.lif = LIFParams(beta=0.8 + 0.05 * i, threshold=0.7 + 0.2 * i)
    save_checkpoint(tmp_path / "q.pt", q)
    back, _ = load_checkpoint(tmp_path / "q.pt")
    assert [m.lif for m in back.neurons()] == [m.lif for m in q.neurons()]
    assert back.head.lif != back.config.lif
    assert back.config == q.config
    x = random_spikes(q, t=15)
    for a, b in zip(reference_outputs(q, x), reference_outputs(back, x)):
        assert torch.equal(a, b)


# ----------------------------------------------------------------------------- bad input


def test_not_a_spikeff_model(tmp_path):
    with pytest.raises(NIRExportError, match="SpikingNet"):
        export_nir(torch.nn.Linear(3, 2))
    bad = tmp_path / "bad.pt"
    torch.save({"weights": torch.zeros(3)}, bad)
    from spikeff.cli import main

    assert main(["export", str(bad), "--out", str(tmp_path / "x.nir")]) == 2
    assert not (tmp_path / "x.nir").exists()
    import argparse

    from spikeff.cli import cmd_export

    with pytest.raises(CheckpointError, match="not a spikeff model"):
        cmd_export(argparse.Namespace(model=bad, out=tmp_path / "x.nir", dt=1e-3, quantize=None, pooling="sum",
                                      fold_r=False, verify=False, verify_samples=1, seed=0))


def test_inexpressible_architectures():
    net = make_net(lif=LIFParams(reset="subtract"))
    with pytest.raises(NIRExportError, match="subtract"):
        export_nir(net)
    with pytest.raises(NIRExportError, match="beta=1"):
        export_nir(make_net(lif=LIFParams(beta=1.0)))
    net = make_net()
    net.layers[0].synapse = torch.nn.Conv2d(2, 4, 3, stride=2, padding=1)
    with pytest.raises(NIRExportError, match="layer 0: Conv2d.*stride"):
        export_nir(net)
    net = make_net()
    net.layers[1].pool = torch.nn.MaxPool2d(2)
    with pytest.raises(NIRExportError, match="layer 1: pooling MaxPool2d"):
        export_nir(net)
    net3 = SpikingNet(NetworkConfig((1, 9, 9), 3, conv_channels=(2,), pool=3))
    with pytest.raises(NIRExportError, match="power of two"):
        export_nir(net3)
    export_nir(net3, pooling="avg")  # fine with AvgPool2d


def test_unsupported_nodes_on_import(tmp_path):
    g = export_nir(make_net())
    nodes = dict(g.nodes)
    edges = [e for e in g.edges if e != ("lif2", "readout")]
    nodes["delay"] = nir.Delay(delay=np.zeros(16, dtype=np.float32))
    nodes["thr"] = nir.Threshold(threshold=np.ones(16, dtype=np.float32))
    edges += [("lif2", "delay"), ("delay", "thr"), ("thr", "readout")]
    bad = nir.NIRGraph(nodes=nodes, edges=edges, type_check=False)
    with pytest.raises(NIRImportError, match=r"unsupported NIR nodes: .*delay \(Delay\).*thr \(Threshold\)"):
        from_nir(bad)
    cuba = nir.NIRGraph.from_list(
        nir.Affine(np.ones((3, 4), np.float32), np.zeros(3, np.float32)),
        nir.CubaLIF(tau_syn=np.ones(3), tau_mem=np.ones(3), r=np.ones(3), v_leak=np.zeros(3),
                    v_threshold=np.ones(3), w_in=np.ones(3)))
    with pytest.raises(NIRImportError, match="CubaLIF"):
        from_nir(cuba)
    with pytest.raises(NIRImportError, match="no such NIR file"):
        from_nir(tmp_path / "missing.nir")
    junk = tmp_path / "junk.nir"
    junk.write_bytes(b"not hdf5")
    with pytest.raises(NIRImportError, match="not a readable NIR graph"):
        from_nir(junk)


@pytest.mark.parametrize("dt", [0, -1e-3, float("nan"), float("inf")])
def test_bad_dt(dt):
    with pytest.raises(NIRExportError, match="dt must be a positive"):
        export_nir(make_net(), dt=dt)
    with pytest.raises(NIRImportError, match="dt must be a positive"):
        from_nir(export_nir(make_net()), dt=dt)


def test_unwritable_path_leaves_nothing(tmp_path, monkeypatch):
    net = make_net()
    with pytest.raises(NIRExportError, match="does not exist"):
        export_nir(net, tmp_path / "no" / "such" / "m.nir")
    with pytest.raises(NIRExportError, match="is a directory"):
        export_nir(net, tmp_path)
    (tmp_path / "file").write_text("x")
    with pytest.raises((NIRExportError, OSError)):
        export_nir(net, tmp_path / "file" / "m.nir")
    # a failure half-way through writing leaves neither a partial file nor a temp file,
    # and an existing file intact
    target = tmp_path / "m.nir"
    target.write_bytes(b"old")

    def broken_write(f, graph, **kw):
        f.write(b"\x89HDF partial")
        raise OSError("disk full")

    monkeypatch.setattr(nir, "write", broken_write)
    with pytest.raises(OSError, match="disk full"):
        export_nir(net, target)
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "m.nir"]


def test_cli_export_verify(tmp_path, capsys):
    net = make_net("lif")
    ckpt = tmp_path / "model.pt"
    save_checkpoint(ckpt, net, {"dataset": "digits", "time_bins": 8})
    from spikeff.cli import main

    out = tmp_path / "model.nir"
    assert main(["export", str(ckpt), "--out", str(out), "--dt", "1e-4", "--verify", "--verify-samples", "2"]) == 0
    text = capsys.readouterr().out
    assert text.count("spike mismatches per layer [0, 0, 0], output 0") == 3
    g = nir.read(out)
    assert float(g.metadata["dt"]) == 1e-4 and g.metadata["train_dataset"] == "digits"
    assert main(["export", str(ckpt), "--out", str(tmp_path / "q.nir"), "--quantize", "loihi", "--verify",
                 "--verify-samples", "1"]) == 0
    assert main(["export", str(ckpt), "--out", str(out), "--dt", "0"]) == 2
    assert "dt must be a positive" in capsys.readouterr().err
