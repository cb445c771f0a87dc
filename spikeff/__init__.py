"""spikeff: spiking networks trained layer-locally by stochastic ED compression."""

from .config import EvalConfig, RunConfig
from .ed import EDLossConfig, ed_loss, effective_dimensionality
from .evaluation import evaluate
from .network import NetworkConfig, SpikingNet
from .neurons import CompiledLIFScan, LIFParams, LIFState, StochasticLIF, lif_scan, lif_scan_fused, lif_step
from .nir import export_nir, from_nir
from .readout_fit import fit_readout
from .trainer import LayerTrainer, TrainConfig

__version__ = "0.1.0"

__all__ = [
    "CompiledLIFScan",
    "EDLossConfig",
    "EvalConfig",
    "LIFParams",
    "LIFState",
    "LayerTrainer",
    "NetworkConfig",
    "RunConfig",
    "SpikingNet",
    "StochasticLIF",
    "TrainConfig",
    "ed_loss",
    "effective_dimensionality",
    "evaluate",
    "export_nir",
    "fit_readout",
    "from_nir",
    "lif_scan",
    "lif_scan_fused",
    "lif_step",
]
