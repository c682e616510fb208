"""Every command of docs/video.md's "A dataset of videos" runs as written (torchrun, gloo, CPU).

The workspace holds what the commands name: ``videos/`` (synthetic videos), the I3D weights cache
(random weights under the cached file's name), ``run.yaml`` and ``runs/ecm/last.pt`` (a tiny ECM
run on synthetic features). The two-node command runs as two launchers on this machine, with
``HEAD=127.0.0.1``.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from test_readme_commands import readme_commands

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "video.md"
TIMEOUT = 1200

ONE_NODE_EXTRACT = "torchrun --nproc_per_node 2 -m tadkit.cli extract videos/ --out features/ --workers 1"
ONE_NODE_FRAMES = "torchrun --nproc_per_node 2 -m tadkit.cli data frames videos/ --out frames/"
TWO_NODES = ("torchrun --nnodes 2 --nproc_per_node $GPUS_PER_NODE --rdzv-backend c10d --rdzv-endpoint $HEAD:$PORT "
             "--rdzv-id features-1 -m tadkit.cli extract videos/ --out features/ --workers 1")
TEST = "torchrun --nproc_per_node 2 -m tadkit.cli test run.yaml --checkpoint runs/ecm/last.pt --out runs/ecm/test"


def section_commands() -> list[str]:
    text = DOC.read_text(encoding="utf-8")
    section = re.search(r"^## A dataset of videos\n(.*?)^## ", text, flags=re.S | re.M)
    assert section, "docs/video.md has no '## A dataset of videos' section"
    return readme_commands(section.group(1))


def test_the_section_has_exactly_the_commands_tested_here():
    assert section_commands() == [ONE_NODE_EXTRACT, ONE_NODE_FRAMES, TWO_NODES, TEST]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    from tadkit.data.synthetic import SynthConfig, generate_dataset
    from tadkit.data.synthetic_video import VideoSynthConfig, generate_video_dataset
    from tadkit.utils.io import torch_save
    from tadkit.video.i3d import I3D

    root = tmp_path_factory.mktemp("dataset_of_videos")
    generate_video_dataset(root / "synth", VideoSynthConfig(seed=4, videos=3, subsets=("validation",), num_classes=2,
                                                            duration=5.0, distractors=1), progress=False)
    (root / "videos").symlink_to(root / "synth" / "videos")
    cache = root / "cache"
    torch.manual_seed(0)
    torch_save({"state_dict": I3D().state_dict(), "source": "random"}, cache / "i3d_rgb_kinetics400.pt")
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE",
                                                            "MASTER_ADDR", "MASTER_PORT")}
    env.update(PYTHONPATH=str(REPO) + os.pathsep + env.get("PYTHONPATH", ""), OMP_NUM_THREADS="1",
               TADKIT_CACHE=str(cache), PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}")

    weak = root / "weak"
    generate_dataset(weak, SynthConfig(seed=5, dim=16, videos=8, min_video_seconds=30.0, max_video_seconds=60.0),
                     progress=False)
    from test_weak_ddp import _config

    (root / "run.yaml").write_text(_config("ecm", weak, weak).read_text())
    trained = subprocess.run([sys.executable, "-m", "tadkit.cli", "train", "run.yaml", "--out", "runs/ecm",
                              "--set", "train.epochs=1", "--no-progress"],
                             cwd=root, env=env, capture_output=True, text=True, timeout=TIMEOUT)
    assert trained.returncode == 0, trained.stderr[-3000:]
    return root, env


def _bash(command: str, cwd: Path, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(["bash", "-c", command], cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _finish(proc: subprocess.Popen) -> tuple[str, str]:
    out, err = proc.communicate(timeout=TIMEOUT)
    assert proc.returncode == 0, f"{proc.args}\n{out[-2000:]}\n{err[-3000:]}"  # 0: no teardown abort accepted
    return out, err


@pytest.mark.slow
def test_one_node_extraction_and_frames(workspace):
    root, env = workspace
    out, _ = _finish(_bash(ONE_NODE_EXTRACT, root, env))
    assert "extracted 3, already done 0, failed 0 -> features by 2 ranks" in out
    spec = json.loads((root / "features" / "features.json").read_text())
    assert spec["dim"] == 1024 and spec["stride_frames"] == 16 and spec["fps"] is None
    assert sorted(p.stem for p in (root / "features").glob("*.npy")) == sorted(p.stem for p in (root / "videos").glob("*.mp4"))

    out, _ = _finish(_bash(ONE_NODE_FRAMES, root, env))
    assert "3 video(s) written, 0 already done by 2 ranks" in out
    index = json.loads((root / "frames" / "frames.json").read_text())
    assert len(index["videos"]) == 3 and all((root / "frames" / "rgb" / f"{v}.npy").is_file() for v in index["videos"])


@pytest.mark.slow
def test_two_nodes_with_c10d_rendezvous(workspace, tmp_path):
    root, env = workspace
    (tmp_path / "videos").symlink_to(root / "videos")
    env = {**env, "GPUS_PER_NODE": "1", "HEAD": "127.0.0.1", "PORT": str(_free_port())}
    nodes = [_bash(TWO_NODES, tmp_path, env) for _ in range(2)]  # two "nodes" sharing one file system
    outputs = [_finish(node) for node in nodes]
    summary = "".join(out for out, _ in outputs)
    assert "extracted 3, already done 0, failed 0 -> features by 2 ranks" in summary
    reference = root / "features"
    if reference.is_dir():  # the one-node run of the other test: the same features
        for npy in reference.glob("*.npy"):
            np.testing.assert_allclose(np.load(tmp_path / "features" / npy.name), np.load(npy), atol=1e-5)
    assert (tmp_path / "features" / "features.json").is_file()


@pytest.mark.slow
def test_tadkit_test_gathers_across_ranks(workspace):
    root, env = workspace
    single = subprocess.run([sys.executable, "-m", "tadkit.cli", "test", "run.yaml", "--checkpoint", "runs/ecm/last.pt",
                             "--out", "runs/ecm/test_single", "--no-plots", "--no-progress"],
                            cwd=root, env=env, capture_output=True, text=True, timeout=TIMEOUT)
    assert single.returncode == 0, single.stderr[-3000:]
    out, _ = _finish(_bash(TEST, root, env))
    assert out.count("report:") == 1  # rank 0 alone evaluates and writes
    test, alone = root / "runs/ecm/test", root / "runs/ecm/test_single"
    # ECM writes each test video's class scores (before any threshold): all videos, gathered once each
    gathered_scores = json.loads((test / "video_scores.json").read_text())
    single_scores = json.loads((alone / "video_scores.json").read_text())
    assert gathered_scores["class"] == single_scores["class"]
    assert gathered_scores["results"].keys() == single_scores["results"].keys() and len(single_scores["results"]) >= 4
    for video, scores in single_scores["results"].items():
        np.testing.assert_allclose(gathered_scores["results"][video], scores, rtol=1e-5, atol=1e-6)
    gathered, single = (json.loads((d / "results.json").read_text())["results"] for d in (test, alone))
    assert gathered.keys() == single.keys()
    for video, dets in single.items():
        mine = gathered[video]
        assert [d["label"] for d in mine] == [d["label"] for d in dets]
        np.testing.assert_allclose([d["score"] for d in mine], [d["score"] for d in dets], rtol=1e-5, atol=1e-6)
    report, reference = (json.loads((d / "report.json").read_text()) for d in (test, alone))
    assert report.keys() == reference.keys()
