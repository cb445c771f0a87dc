"""The memory meters of benchmarks/memory_depth.py count what they claim to."""

import importlib.util
from pathlib import Path

import torch

_spec = importlib.util.spec_from_file_location(
    "memory_depth", Path(__file__).resolve().parents[1] / "benchmarks" / "memory_depth.py"
)
md = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(md)


def test_live_storage_counts_new_storages_until_released():
    resident = torch.zeros(1000)
    live = md.LiveStorage([resident])
    with live:
        a = torch.ones(1000)  # 4000 bytes
        b = a * 2  # 8000 live
        v = b.view(10, 100)  # a view: no new storage
        resident.add_(1)  # in place on a resident tensor: not counted
        del a
        c = v + 1  # 8000 live again
    assert live.peak == 8000 and live.live == 8000
    del b, v, c
    assert live.live == 0


def test_saved_for_backward_counts_each_storage_once_while_a_graph_holds_it():
    saved = md.SavedForBackward()
    x = torch.ones(1000, requires_grad=True)
    with torch.autograd.graph.saved_tensors_hooks(saved.pack, saved.unpack):
        y = torch.sigmoid(x)  # saves its output (4000 bytes)
        z = (y * y).sum()  # saves y twice: the same storage
    assert saved.peak == 4000 and saved.live == 4000
    z.backward()
    assert saved.live == 0 and torch.allclose(x.grad, 2 * y * y * (1 - y))


def test_measure_tiny_nets():
    args = md.build_parser().parse_args(["--channels", "4", "--size", "8", "--batch", "2", "--trials", "2",
                                         "--time-bins", "3"])
    for method in md.METHODS:
        one, two = md.measure(method, 1, args), md.measure(method, 2, args)
        assert 0 < one["saved"] < one["tensors"] and one["resident"] < one["tensors"]
        assert two["tensors"] > one["tensors"]


def test_op_transients_keep_each_ops_largest_extra_memory():
    # A fake allocator: nothing allocated before an op, a peak of 4096 bytes during it.
    meter = md.OpTransients(lambda: 0, lambda: 4096, lambda: None)
    with meter:
        torch.ones(10)  # 40 bytes of output: 4056 bytes held beyond it
        torch.zeros(100)  # 400 bytes of output
    assert dict(meter.worst) == {"aten.ones": 4056, "aten.zeros": 3696}
    assert meter.top(1) == [("aten.ones", 4056)]
