import sys, resource, torch
from dataclasses import replace
torch.set_num_threads(1)
from spikeff.network import NetworkConfig, SpikingNet
from spikeff.trainer import LayerTrainer, TrainConfig
from spikeff.evaluation import evaluate
case = sys.argv[1]
def rss(): return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss/1024
cfg = NetworkConfig(conv_channels=(64,128)).for_data((2,34,34), 10)
g = torch.Generator().manual_seed(0)
B = 64 if case.startswith("eval") else 32
x = (torch.rand(10, B, 2, 34, 34, generator=g) < 0.05).float(); y = torch.randint(0,10,(B,),generator=g)
base = rss()
if case == "bptt":
    from spikeff.baselines.bptt import SnnTorchNet, bptt_epoch
    from spikeff.trainer import cosine_schedule
    net = SnnTorchNet(cfg, g); opt = torch.optim.Adam(net.parameters(), 1e-3)
    bptt_epoch(net, opt, cosine_schedule(opt, 10), [(x, y)])
else:
    scan = case.split("/")[1]
    net = SpikingNet(replace(cfg, scan=scan), g)
    if case.startswith("eval"):
        net.eval(); evaluate(net, [(x, y)], 8, torch.Generator().manual_seed(1))
    else:
        LayerTrainer(net, TrainConfig(), torch.Generator().manual_seed(1), progress=False).train_epoch([(x, y)])
print(f"{case}: base {base:.0f} MiB, peak {rss():.0f} MiB, step {rss()-base:.0f} MiB")
