"""Data parallelism: 2 gloo processes on CPU give the single-process loss, gradients and steps."""

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from helpers import interrupt_mid_pass, wait_for_first_epoch

from spikeff.checkpoint import load_checkpoint
from spikeff.distributed import (
    DataParallel,
    DistContext,
    ShardedBatches,
    broadcast_flag,
    check_shardable,
    rank_seed,
    shard_batch,
    shard_bounds,
)
from spikeff.ed import EDLossConfig, ed_loss
from spikeff.experiment import load_state
from spikeff.network import NetworkConfig, SpikingNet
from spikeff.neurons import LIFParams
from spikeff.trainer import LayerTrainer, TrainConfig

WORLD = 2
RTOL, ATOL = 1e-10, 1e-13

# (covariance, diversity, batch, spatial positions): odd batches split unequally.
ED_CASES = [("trial", "signal", 6, (3,)), ("second_moment", "second_moment", 7, ()), ("trial", "covariance", 5, (2, 2))]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ed_problem(case: tuple) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs ``(n, B, D, *S)`` and weights ``(C, D)``: counts are a smooth function of the weights."""
    _, _, b, spatial = case
    g = torch.Generator().manual_seed(11)
    x = torch.randn(3, b, 5, *spatial, generator=g, dtype=torch.float64)
    w = torch.randn(4, 5, generator=g, dtype=torch.float64)
    return x, w


def _ed_loss_and_grad(x: torch.Tensor, w: torch.Tensor, case: tuple, sync: DataParallel | None):
    cov, diversity, _, _ = case
    w = w.clone().requires_grad_(True)
    counts = torch.nn.functional.softplus(torch.einsum("cd,nbd...->nbc...", w, x))
    cfg = EDLossConfig(alpha=0.3, covariance=cov, diversity=diversity)
    loss, cons, div = ed_loss(counts, cfg, reduce=None if sync is None else sync.reduce)
    loss.backward()
    if sync is not None:
        sync.average_gradients([w])
    return torch.stack([loss, cons, div]).detach(), w.grad


def _tiny_net() -> tuple[SpikingNet, TrainConfig]:
    # Deterministic neurons, so every process sees the spikes a single process would; no batch
    # norm, whose statistics are those of each process's part of the batch.
    lif = LIFParams(delta=0.0, sigma=0.0, threshold=0.3)
    cfg = NetworkConfig(input_shape=(2, 8, 8), n_classes=3, conv_channels=(4,), hidden=(6,), lif=lif, norm="none")
    net = SpikingNet(cfg, torch.Generator().manual_seed(0)).double()
    tcfg = TrainConfig(epochs=1, trials=2, lr=1e-2, loss=EDLossConfig(covariance="second_moment"))
    return net, tcfg


def _trainer_batch(b: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    x = torch.rand(6, b, 2, 8, 8, generator=g, dtype=torch.float64)
    return x, torch.arange(b) % 3


def _trainer_step(batch: tuple, sync: DataParallel | None, rank: int = 0) -> dict[str, torch.Tensor]:
    net, tcfg = _tiny_net()
    trainer = LayerTrainer(net, tcfg, torch.Generator().manual_seed(1), sync)
    batches = [batch] if sync is None else ShardedBatches([batch], rank, WORLD)
    trainer.train_epoch(batches)
    out = {k: v.detach().clone() for k, v in net.state_dict().items()}
    # Adam's first moment after one step is 0.1 * the gradient: compare gradients, not just signs.
    for i, opt in enumerate(trainer.layer_opts + [trainer.head_opt]):
        for j, p in enumerate(opt.param_groups[0]["params"]):
            out[f"grad{i}.{j}"] = opt.state[p]["exp_avg"] / 0.1
    return out


def _worker(rank: int, port: int, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD)
    try:
        sync = DataParallel()
        res: dict = {}
        # all_reduce's backward: each rank's upstream gradient c_r = r + 1; the gradient that
        # reaches every rank's input is their sum over the ranks, not its own c_r nor their mean.
        t = torch.ones(3, dtype=torch.float64, requires_grad=True)
        (sync.reduce(t) * (rank + 1)).sum().backward()
        res["reduce_grad"] = t.grad
        for i, case in enumerate(ED_CASES):
            x, w = _ed_problem(case)
            start, stop = shard_bounds(x.shape[1], rank, WORLD)
            res[f"ed{i}"] = _ed_loss_and_grad(x[:, start:stop], w, case, sync)
        for b in (6, 5):
            res[f"trainer{b}"] = _trainer_step(_trainer_batch(b), sync, rank)
        ctx = DistContext(rank, WORLD)
        res["flags"] = torch.tensor([broadcast_flag(rank == 0, ctx), broadcast_flag(rank == 1, ctx)])
        torch.save(res, Path(out) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def ranks(tmp_path_factory) -> list[dict]:
    out = tmp_path_factory.mktemp("dist")
    mp.spawn(_worker, args=(_free_port(), str(out)), nprocs=WORLD, join=True)
    return [torch.load(out / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]


def test_every_rank_follows_rank0s_flag(ranks):
    for r in ranks:
        assert r["flags"].tolist() == [True, False]


def test_all_reduce_backward_sums_upstream_gradients(ranks):
    for r in ranks:
        torch.testing.assert_close(r["reduce_grad"], torch.full((3,), 3.0, dtype=torch.float64))


@pytest.mark.parametrize("i", range(len(ED_CASES)))
def test_ed_loss_and_gradients_equal_single_process(ranks, i):
    x, w = _ed_problem(ED_CASES[i])
    values, grad = _ed_loss_and_grad(x, w, ED_CASES[i], None)
    for r in ranks:
        got_values, got_grad = r[f"ed{i}"]
        torch.testing.assert_close(got_values, values, rtol=RTOL, atol=ATOL)
        torch.testing.assert_close(got_grad, grad, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("b", [6, 5])
def test_trainer_step_equals_single_process(ranks, b):
    expected = _trainer_step(_trainer_batch(b), None)
    before, _ = _tiny_net()
    for k, v in before.state_dict().items():  # every layer and the head learn (no zero gradients)
        assert (expected[k] - v).abs().max() > 1e-4, k
    assert all(v.abs().max() > 1e-3 for k, v in expected.items() if k.startswith("grad"))
    for r in ranks:
        assert r[f"trainer{b}"].keys() == expected.keys()
        for k, v in expected.items():
            torch.testing.assert_close(r[f"trainer{b}"][k], v, rtol=RTOL, atol=ATOL, msg=k)


def test_shards_and_seeds():
    x, y = torch.arange(14.0).view(2, 7), torch.arange(7)
    parts = [shard_batch(x, y, r, 3) for r in range(3)]
    assert [p[1].tolist() for p in parts] == [[0, 1, 2], [3, 4], [5, 6]]
    assert torch.equal(torch.cat([p[0] for p in parts], 1), x)
    with pytest.raises(ValueError, match="cannot be split over 3 processes"):
        shard_batch(x[:, :2], y[:2], 0, 3)
    check_shardable(40, 16, 2)
    with pytest.raises(ValueError, match="--batch-size or --limit"):
        check_shardable(33, 16, 2)
    assert rank_seed(1001, 0) == 1001 and len({rank_seed(s, r) for s in range(50) for r in range(4)}) == 200


def test_supervised_is_refused_with_reduce():
    with pytest.raises(ValueError, match="supervised"):
        ed_loss(torch.rand(2, 4, 3), EDLossConfig(supervised=True), torch.arange(4), reduce=lambda t: t)


def test_torchrun_cli_only_rank0_writes(tmp_path):
    out, cache = tmp_path / "run", tmp_path / "cache"
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={WORLD}", "--nnodes=1",
           "--master_addr=127.0.0.1", f"--master_port={_free_port()}", "-m", "spikeff", "train",
           "--dataset", "digits", "--cache-dir", str(cache), "--out", str(out), "--limit", "40", "--epochs", "2",
           "--readout-epochs", "1", "--channels", "4", "--trials", "2", "--time-bins", "4", "--batch-size", "16",
           "--schedule", "greedy", "--hidden", "6", "--scan", "eager"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(p.name for p in out.iterdir()) == ["metrics.json", "model.pt"]
    metrics = json.loads((out / "metrics.json").read_text())
    assert len(metrics["history"]) == 2 and "control_accuracy" in metrics
    assert proc.stdout.count("epoch 1 (") == 1  # printed by rank 0 only


def _torchrun(*args: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={WORLD}", "--nnodes=1",
            "--master_addr=127.0.0.1", f"--master_port={_free_port()}", "-m", "spikeff", "train", *args]


def _children(pid: int) -> list[int]:
    return [int(c) for t in Path(f"/proc/{pid}/task").iterdir() for c in (t / "children").read_text().split()]


@pytest.mark.slow
@pytest.mark.parametrize("where", ["epoch", "mid-pass"])
def test_torchrun_resume_after_sigkill_matches_uninterrupted_run(tmp_path, where):
    """Every rank's noise state is in rank 0's state file: a resumed 2-process run gives the same numbers,
    from an epoch boundary and from a timed save inside a pass (all ranks save on rank 0's clock)."""
    env = {**os.environ, "TQDM_DISABLE": "1", "OMP_NUM_THREADS": "1"}
    cache = tmp_path / "cache"

    def cmd(out, *extra):
        return _torchrun("--dataset", "digits", "--cache-dir", str(cache), "--out", str(out), "--limit", "60",
                         "--epochs", "4", "--readout-epochs", "1", "--channels", "4,4", "--trials", "2",
                         "--time-bins", "4", "--batch-size", "4", "--schedule", "greedy", "--no-control",
                         "--scan", "eager", *extra)

    ref, run = tmp_path / "ref", tmp_path / "run"
    subprocess.run(cmd(ref), check=True, env=env, capture_output=True, timeout=300)
    state = run / "train_state.pt"
    if where == "epoch":
        proc = subprocess.Popen(cmd(run), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_first_epoch(proc, state)
        for pid in _children(proc.pid):  # the workers (torchrun starts them in sessions of their own)
            os.kill(pid, signal.SIGKILL)
        proc.wait(timeout=60)  # torchrun gives up once its workers died
        saved = load_state(state)
    else:
        proc = subprocess.Popen(cmd(run, "--checkpoint-minutes", "0.0001"), env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        saved = interrupt_mid_pass(proc, lambda: _children(proc.pid), state)
        assert saved["trainer"]["position"]["batches"] > 0
    assert saved["world"] == WORLD and len(saved["rank_generators"]) == WORLD
    res = subprocess.run(_torchrun("--resume", str(run)), env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.count("resuming") == 1
    a, _ = load_checkpoint(ref / "model.pt")
    b, _ = load_checkpoint(run / "model.pt")
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert not state.exists()
    one = subprocess.run([sys.executable, "-m", "spikeff", "train", "--resume", str(run)], env=env,
                         capture_output=True, text=True)
    assert one.returncode == 2 and "no run state" in one.stderr
