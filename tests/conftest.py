"""Fixtures shared by the test modules; plain helpers live in helpers.py."""

from __future__ import annotations

from pathlib import Path

import pytest
import tonic
from helpers import write_nmnist


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
