"""Shared test helpers: where ../shared is, and skipping with a clear reason when it is absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("TADKIT_SHARED", REPO.parent / "shared"))


def shared_path(*parts: str) -> Path:
    """Path inside ../shared, or skip the calling test with the reason it is missing."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"needs {path} (the project's ../shared directory; set TADKIT_SHARED to point at it)")
    return path


@pytest.fixture
def shared():
    return shared_path


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models: intra-op threads only add sync overhead (and stall on a busy machine). Use with
    ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(autouse=True)
def _private_feature_cache(tmp_path_factory, request, monkeypatch):
    """`tadkit detect` caches extracted features; in tests that cache is per test, never ~/.cache."""
    import hashlib

    name = hashlib.sha1(request.node.nodeid.encode()).hexdigest()[:16]
    monkeypatch.setenv("TADKIT_FEATURE_CACHE", str(tmp_path_factory.getbasetemp() / "feature_cache" / name))


@pytest.fixture
def figures(monkeypatch):
    """Every Figure a plot function saves, in order."""
    import tadkit.viz.plots as plots

    captured = []
    real_save = plots._save

    def capture(fig, path):
        captured.append(fig)
        return real_save(fig, path)

    monkeypatch.setattr(plots, "_save", capture)
    return captured
