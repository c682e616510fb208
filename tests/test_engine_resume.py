"""SIGKILL a training process mid-epoch, resume it, and get exactly the uninterrupted run's numbers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from test_engine_support import toy_config_dict

SUPPORT = Path(__file__).with_name("test_engine_support.py")
TIMEOUT = 240.0


def subprocess_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    env["OMP_NUM_THREADS"] = "1"
    return env


def write_config(path: Path, **train) -> Path:
    data = toy_config_dict(**train)
    data["model"]["kwargs"]["random_negatives"] = 0.5  # the loss consumes torch's global RNG every step
    path.write_text(yaml.safe_dump(data))
    return path


def start(command: list[str]) -> subprocess.Popen:
    return subprocess.Popen(command, env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen) -> str:
    """Wait for a started process; fail with its output unless it exits 0 (under torchrun: every rank,
    teardown included). Returns its stdout."""
    try:
        stdout, stderr = proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        stdout, stderr = proc.communicate()
        pytest.fail(f"{proc.args} timed out\n{stderr[-3000:]}")
    assert proc.returncode == 0, f"{' '.join(map(str, proc.args))}\n{stdout[-2000:]}\n{stderr[-4000:]}"
    return stdout


def run_to_end(config: Path, out: Path, *extra: str) -> None:
    finish(start([sys.executable, str(SUPPORT), "train", str(config), str(out), *extra]))


def history(out: Path) -> list[dict]:
    return json.loads((out / "history.json").read_text())["epochs"]


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_matches_the_uninterrupted_run(tmp_path):
    config = write_config(tmp_path / "toy.yaml", epochs=3)
    reference, killed = tmp_path / "reference", tmp_path / "killed"
    uninterrupted = start([sys.executable, str(SUPPORT), "train", str(config), str(reference)])  # runs meanwhile

    # Same run, slowed down (100 ms per sample) so the kill lands inside epoch 2.
    proc = subprocess.Popen([sys.executable, str(SUPPORT), "train", str(config), str(killed), "--sleep", "0.1"],
                            env=subprocess_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + TIMEOUT
    log = killed / "train.log"
    try:
        while True:
            if proc.poll() is not None:
                pytest.fail(f"training exited before the kill: {proc.stderr.read()[-3000:]}")
            if (killed / "last.pt").exists() and log.exists() and "epoch 2 step" in log.read_text():
                break
            if time.monotonic() > deadline:
                pytest.fail("no epoch-2 progress within the time limit")
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    assert not (killed / "epoch_002.pt").exists(), "the kill came too late: epoch 2 had finished"
    assert torch.load(killed / "last.pt", weights_only=True)["epoch"] == 1
    assert len(history(killed)) == 1

    run_to_end(config, killed, "--resume")
    finish(uninterrupted)
    got, want = history(killed), history(reference)
    assert [h["epoch"] for h in got] == [1, 2, 3]
    for mine, theirs in zip(got, want):
        for term, value in theirs["loss"].items():
            assert mine["loss"][term] == pytest.approx(value, rel=1e-6, abs=1e-6), (mine["epoch"], term)
    final = torch.load(killed / "last.pt", weights_only=True)["model"]
    for key, value in torch.load(reference / "last.pt", weights_only=True)["model"].items():
        torch.testing.assert_close(final[key], value, rtol=1e-6, atol=1e-7)
    assert "resumed from" in log.read_text()
