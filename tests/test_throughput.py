"""benchmarks/throughput.py trains both methods and reports what it timed."""

import importlib.util
import sys
from pathlib import Path

_spec = importlib.util.spec_from_file_location(
    "throughput", Path(__file__).resolve().parents[1] / "benchmarks" / "throughput.py"
)
tp = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(tp)


def test_throughput_report_at_tiny_size(tmp_path, monkeypatch):
    out = tmp_path / "t.md"
    monkeypatch.setattr(sys, "argv", ["throughput.py", "--cases", "bptt,spikeff/eager/fp32", "--channels", "4",
                                      "--batch", "4", "--batches", "2", "--time-bins", "3", "--trials", "2",
                                      "--warmup", "0", "--repeats", "2", "--out", str(out)])
    tp.main()
    rows = [line for line in out.read_text().splitlines() if line.startswith("| bptt") or line.startswith("| spikeff")]
    assert len(rows) == 2
    bptt, spikeff = ([c.strip() for c in r.strip("|").split("|")] for r in rows)
    assert bptt[2] == "1.00x" and bptt[4] == "1.00x"
    sps, bptt_sps = float(spikeff[1].split()[0]), float(bptt[1].split()[0])
    # per input: spikeff's inputs/s over BPTT's; trial-samples/s is n x inputs/s (to the table's rounding)
    assert abs(float(spikeff[2].rstrip("x")) - sps / bptt_sps) <= 0.05 * sps / bptt_sps + 0.01
    assert abs(float(spikeff[3]) - 2 * sps) <= 2
    expected = float(spikeff[3]) / bptt_sps
    assert abs(float(spikeff[4].rstrip("x")) - expected) <= 0.05 * expected + 0.01
