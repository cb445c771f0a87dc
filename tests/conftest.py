"""Fixtures shared by the test modules; plain helpers live in helpers.py."""

from __future__ import annotations

from pathlib import Path

import pytest
import tonic
from helpers import write_nmnist

import spikeff.scan


@pytest.fixture(autouse=True)
def auto_scan_is_eager(monkeypatch):
    """``scan="auto"`` runs the eager scan in tests, without a notice: compiling in every test that
    builds such a net would slow the suite down. Tests of ``auto`` itself undo this
    with ``monkeypatch.undo()`` or patch :func:`spikeff.scan.auto_backend` themselves."""
    monkeypatch.setattr(spikeff.scan, "auto_backend", lambda: ("eager", None))


@pytest.fixture
def fake_nmnist(tmp_path: Path) -> Path:
    """A tonic ``save_to`` root holding 21 fake N-MNIST samples of digits 0 and 1."""
    return write_nmnist(tmp_path / "data")


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    return tmp_path / "cache"


@pytest.fixture
def count_decodes(monkeypatch) -> list[str]:
    """The paths tonic decodes during the test, in order."""
    calls: list[str] = []
    real = tonic.io.read_mnist_file

    def counting(path, *a, **k):
        calls.append(str(path))
        return real(path, *a, **k)

    monkeypatch.setattr(tonic.io, "read_mnist_file", counting)
    return calls
