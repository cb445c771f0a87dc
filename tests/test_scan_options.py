"""The network's execution options: the compiled LIF scan and bf16 synaptic ops."""

import math
import pickle
from dataclasses import replace

import pytest
import torch

from spikeff.checkpoint import load_checkpoint, save_checkpoint
from spikeff.cli import build_parser
from spikeff.config import from_args, from_dict, to_dict
from spikeff.evaluation import evaluate
from spikeff.network import NetworkConfig, SpikingNet
from spikeff.neurons import CompiledLIFScan, LIFParams, lif_scan
from spikeff.scan import adjoint_scan
from spikeff.trainer import LayerTrainer, TrainConfig


def tiny_net(seed: int = 0, **kw) -> SpikingNet:
    cfg = NetworkConfig((2, 8, 8), 3, conv_channels=(4,), hidden=(6,), lif=LIFParams(delta=0.3), **kw)
    return SpikingNet(cfg, torch.Generator().manual_seed(seed))


def tiny_batches(n_batches: int = 2, b: int = 6, t: int = 5):
    g = torch.Generator().manual_seed(11)
    return [((torch.rand(t, b, 2, 8, 8, generator=g) < 0.4).float() * 3, torch.arange(b) % 3) for _ in range(n_batches)]


def test_config_fields_and_old_dicts(tmp_path):
    cfg = NetworkConfig((2, 8, 8), 3, scan="compiled", precision="bf16")
    assert from_dict(NetworkConfig, to_dict(cfg)) == cfg
    old = {k: v for k, v in to_dict(NetworkConfig((2, 8, 8), 3)).items() if k not in ("scan", "precision")}
    restored = from_dict(NetworkConfig, old)  # a checkpoint written before the fields existed
    assert restored.scan == "eager" and restored.precision == "fp32"
    with pytest.raises(ValueError, match="scan"):
        NetworkConfig((2, 8, 8), 3, scan="triton")
    with pytest.raises(ValueError, match="precision"):
        NetworkConfig((2, 8, 8), 3, precision="fp16")

    net = tiny_net()
    save_checkpoint(tmp_path / "m.pt", net)
    payload = torch.load(tmp_path / "m.pt", weights_only=True)
    payload["network"] = {k: v for k, v in payload["network"].items() if k not in ("scan", "precision")}
    torch.save(payload, tmp_path / "old.pt")
    loaded, _ = load_checkpoint(tmp_path / "old.pt")
    assert loaded.config == replace(net.config, scan="eager") and loaded.layers[0].scan is adjoint_scan  # then default


def test_scan_is_shared_by_layers_and_head():
    net = tiny_net(scan="compiled", readout="lif")
    assert isinstance(net.layers[0].scan, CompiledLIFScan)
    assert net.layers[0].scan is net.layers[1].scan is net.head.scan
    assert tiny_net().layers[0].scan is adjoint_scan
    copy = pickle.loads(pickle.dumps(net))
    assert isinstance(copy.layers[0].scan, CompiledLIFScan) and copy.layers[0].scan is copy.head.scan


@pytest.mark.slow
def test_compiled_net_gives_eager_spikes_and_gradients():
    """Same weights and seed: the same spikes in every layer and the head; gradients to rounding."""
    eager = tiny_net(readout="lif")
    compiled = tiny_net(readout="lif", scan="compiled")
    x, y = tiny_batches(1)[0]
    outs = []
    for net in (eager, compiled):
        g = torch.Generator().manual_seed(4)
        spikes = net.layer_outputs(x, g, trials=2)
        z = net.head(spikes[-1], g)
        trainer = LayerTrainer(net, TrainConfig(trials=2), torch.Generator().manual_seed(5))
        trainer.layer_step(0, x, y, 2)
        outs.append((spikes, z, [p.grad for p in net.layers[0].parameters()]))
    if compiled.layers[0].scan.fallback_reason is not None:
        pytest.skip(f"torch.compile is unavailable here: {compiled.layers[0].scan.fallback_reason}")
    (se, ze, ge), (sc, zc, gc) = outs
    assert all(torch.equal(a, b) for a, b in zip(se, sc)) and torch.equal(ze, zc)
    for a, b in zip(ge, gc):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_bf16_precision_trains_like_fp32():
    """bf16 synaptic ops: bf16 currents, float32 spikes, a finite loss and spike rates close to fp32's."""
    x, _ = tiny_batches(1)[0]
    bf = tiny_net(precision="bf16")
    assert bf.layers[0].currents(x).dtype == torch.bfloat16
    assert bf.layer_outputs(x, torch.Generator().manual_seed(0))[0].dtype == torch.float32
    records = []
    for net in (tiny_net(), bf):
        trainer = LayerTrainer(net, TrainConfig(epochs=1, trials=2), torch.Generator().manual_seed(3))
        records.append(trainer.fit(tiny_batches(3))[0])
        res = evaluate(net, tiny_batches(1), trials=2, generator=torch.Generator().manual_seed(0))
        assert 0 < min(res.layer_rates) and max(res.layer_rates) < 1
    for r in records:
        assert all(math.isfinite(v) for v in [*(st.loss for st in r.layers), r.head_loss])
    for fp32, bf16 in zip(records[0].layers, records[1].layers):
        assert bf16.rate == pytest.approx(fp32.rate, abs=0.03)


def test_cli_flags_reach_the_config():
    args = from_args(build_parser().parse_args(["train", "--out", "x", "--scan", "compiled", "--precision", "bf16"]))
    assert (args.network.scan, args.network.precision) == ("compiled", "bf16")
    defaults = from_args(build_parser().parse_args(["train", "--out", "x"]))
    assert (defaults.network.scan, defaults.network.precision) == ("eager", "fp32")
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--scan", "triton"])

    from spikeff.bench import build_parser as bench_parser
    from spikeff.bench import settings_from_args

    s = settings_from_args(bench_parser().parse_args(["--out", "o", "--scan", "compiled", "--precision", "bf16"]))
    assert (s.run.network.scan, s.run.network.precision) == ("compiled", "bf16")
    splits = type("S", (), {"frame_shape": (2, 8, 8), "n_classes": 3})()
    cfg = s.network_config(splits)
    assert (cfg.scan, cfg.precision) == ("compiled", "bf16")
    with pytest.raises(SystemExit):
        bench_parser().parse_args(["--out", "o", "--precision", "fp8"])


def test_default_scan_trains_the_reference_weights_bit_for_bit():
    """The default ("eager": the adjoint scan) and the reference eager scan: the same weights after an epoch."""
    nets = [tiny_net(), tiny_net()]
    for layer in nets[1].layers:
        layer.scan = lif_scan
    for net in nets:
        LayerTrainer(net, TrainConfig(trials=3), torch.Generator().manual_seed(5), progress=False).train_epoch(
            tiny_batches(2))
    a, b = (dict(net.named_parameters()) for net in nets)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["layers.0.synapse.weight"], tiny_net().layers[0].synapse.weight)  # it did train
