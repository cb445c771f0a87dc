"""Fixed-seed checksums of the LIF scans and a small SpikingNet forward + backward (sha256 of raw bytes)."""
import hashlib
import json
import sys

import torch

from spikeff.network import NetworkConfig, SpikingNet
from spikeff.neurons import LIFParams, LIFState, lif_scan, lif_scan_fused, make_scan


def h(t):
    return hashlib.sha256(t.detach().contiguous().cpu().numpy().tobytes()).hexdigest()[:16]


VARIANTS = {
    "escape": LIFParams(delta=0.3),
    "escape_expected": LIFParams(delta=0.3, gradient="expected"),
    "heaviside": LIFParams(delta=0.0),
    "membrane_subtract": LIFParams(delta=0.2, sigma=0.3, reset="subtract"),
    "heaviside_sigma_subtract": LIFParams(delta=0.0, sigma=0.2, reset="subtract"),
}


def scan_case(scan, p):
    g = torch.Generator().manual_seed(3)
    x = (torch.randn(6, 4, 3, 5, generator=g) * 1.2 + 0.4).requires_grad_()
    v0 = (torch.rand(4, 3, 5, generator=g) * 0.5).requires_grad_()
    s, st = scan(x, p, g, LIFState(v0))
    w = torch.randn(s.shape, generator=torch.Generator().manual_seed(9))
    ((s * w).sum() + st.v.sum() * 0.3).backward()
    return {"spikes": h(s), "v": h(st.v), "gx": h(x.grad), "gv0": h(v0.grad), "rng": h(g.get_state())}


def net_case(scan, readout):
    cfg = NetworkConfig((2, 8, 8), 3, conv_channels=(4,), hidden=(6,), lif=LIFParams(delta=0.3), readout=readout,
                        scan=scan)
    net = SpikingNet(cfg, torch.Generator().manual_seed(0))
    gx = torch.Generator().manual_seed(11)
    x = (torch.rand(5, 6, 2, 8, 8, generator=gx) < 0.4).float() * 3
    g = torch.Generator().manual_seed(4)
    spikes = net.layer_outputs(x, g, trials=2)
    z = net.head(spikes[-1].detach(), g)
    loss = sum((s * (i + 1)).mean() for i, s in enumerate(spikes)) + z.float().pow(2).mean()
    loss.backward()
    return {"spikes": [h(s) for s in spikes], "head": h(z),
            "grads": [h(p.grad) for p in net.parameters() if p.grad is not None], "rng": h(g.get_state())}


out = {}
backends = sys.argv[1].split(",") if len(sys.argv) > 1 else ["eager", "fused"]
for b in backends:
    scan = {"eager": lif_scan, "fused": lif_scan_fused}.get(b) or make_scan(b)
    out[b] = {name: scan_case(scan, p) for name, p in VARIANTS.items()}
out["net_eager"] = {r: net_case("eager", r) for r in ("linear", "lif")}
if "compiled" in backends:
    out["net_compiled"] = {r: net_case("compiled", r) for r in ("linear", "lif")}
print(json.dumps(out, indent=1, sort_keys=True))
