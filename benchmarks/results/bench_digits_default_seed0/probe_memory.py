import resource, sys, time, numpy as np
def hwm():
    for l in open('/proc/self/status'):
        if l.startswith('VmHWM'): return int(l.split()[1])//1024
    return 0
from spikeff.probe import fit_probe
n, d = int(sys.argv[1]), int(sys.argv[2])
rng = np.random.default_rng(0)
x = (rng.random((n, d), dtype=np.float32) < 0.1).astype(np.float32); y = np.arange(n) % 10
print('before fit', hwm(), 'MiB; features', x.nbytes >> 20, 'MiB', flush=True)
t = time.time(); fit_probe(x, y); print('after fit', hwm(), 'MiB', round(time.time()-t,1), 's')
