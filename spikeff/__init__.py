"""spikeff: spiking networks trained layer-locally."""

from .nir import export_nir, from_nir

__all__ = ["export_nir", "from_nir"]
