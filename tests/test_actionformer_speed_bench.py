"""benchmarks/actionformer_speed.py: its tadkit half at tiny sizes, its like-for-like loss check and its
argument / checkout checks. No official checkout is needed (the one test that uses it is skipped unless
``TADKIT_ACTIONFORMER_OFFICIAL`` names a prepared checkout) and no timing is asserted."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tadkit.errors import TadkitError

pytestmark = pytest.mark.usefixtures("one_torch_thread")
ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "actionformer_speed.py"
# window 5 -> the largest level stride x 2 (window // 2) is 32 x 4, so max_seq_len 128 is valid
TINY = ["--input-dim", "12", "--embd-dim", "8", "--n-head", "2", "--window", "5", "--max-seq-len", "128",
        "--batch", "2", "--num-classes", "3", "--iters", "1", "--repeats", "1", "--videos", "1"]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("actionformer_speed_under_test", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up while being defined
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


def test_tadkit_half_runs_at_tiny_sizes_and_reports(bench, tmp_path, capsys):
    out = tmp_path / "speed.json"
    assert bench.main(["--tadkit-only", *TINY, "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "input 12, embd 8, heads 2, window 5, max_seq_len 128, batch 2, classes 3" in printed
    assert "tadkit:" in printed and "s / 100 training iterations" in printed and "official:" not in printed
    result = json.loads(out.read_text())
    assert result["sizes"]["max_seq_len"] == 128 and "train_ratio_tadkit_over_official" not in result
    assert all(64 <= n <= 128 for n in result["lengths"])  # uniform in [max_seq_len / 2, max_seq_len]
    assert result["tadkit"]["train_s_per_100_iters"] > 0 and result["tadkit"]["infer_s_per_video"] > 0
    assert len(result["tadkit"]["rounds_train_s_per_iter"]) == 1
    # every batch is padded to a length the model accepts (a multiple of its largest divisor)
    assert all(n >= max(result["lengths"][:2]) and n % 128 == 0 for n in result["padded_length"]["tadkit"])


def test_training_step_updates_the_weights_with_the_official_decay_groups(bench):
    args = bench.parse_args(["--tadkit-only", *TINY])
    videos = bench.random_videos(2, 12, 128, 3, seed=0)
    (side,), _ = bench.build_sides(args, videos)
    decayed = {id(p) for g in side.optimizer.param_groups if g["weight_decay"] > 0 for p in g["params"]}
    conv_or_linear = {id(m.weight) for m in side.model.modules() if isinstance(m, (torch.nn.Conv1d, torch.nn.Linear))}
    assert conv_or_linear and decayed == conv_or_linear  # official make_optimizer: no decay on biases, norms, scales
    assert sum(len(g["params"]) for g in side.optimizer.param_groups) == len(list(side.model.parameters()))
    before = {n: p.detach().clone() for n, p in side.model.named_parameters()}
    side.model.train()
    loss = side.train_step(0)
    assert loss == loss and loss > 0  # finite (not NaN), a sum of positive terms
    changed = [n for n, p in side.model.named_parameters() if not torch.equal(before[n], p)]
    assert "backbone.embd.0.conv.weight" in changed and "cls_head.cls_head.conv.bias" in changed
    side.model.eval()
    assert side.detect(0) > 0  # random weights: probabilities ~ cls_prior_prob 0.01 > pre_nms_thresh 0.001


class VideoListLosses(torch.nn.Module):
    """Stands in for the official model in the loss check: a tadkit model called with the official video list."""

    def __init__(self, model: torch.nn.Module, bench) -> None:
        super().__init__()
        self.model, self.bench = model, bench

    def forward(self, video_list):
        videos = [self.bench.Video(v["video_id"], v["feats"], v["segments"], v["labels"]) for v in video_list]
        batch = self.bench.tadkit_batch(videos)
        losses = self.model.loss(self.model(batch), batch)
        return {"cls_loss": losses["cls"], "reg_loss": losses["reg"], "final_loss": losses["total"]}


def test_loss_check_passes_on_the_same_weights_and_refuses_other_weights(bench):
    from tadkit.methods.actionformer.method import build_actionformer_method

    config = bench.model_config({"input_dim": 12, "embd_dim": 8, "n_head": 2, "window": 5, "max_seq_len": 128,
                                 "num_classes": 3}, droppath=0.1)
    torch.manual_seed(0)
    reference = build_actionformer_method(**config)
    same = build_actionformer_method(**config)
    same.load_state_dict(reference.state_dict())
    videos = bench.random_videos(2, 12, 128, 3, seed=1)
    figures = bench.compare_losses(VideoListLosses(reference, bench), same, videos, rtol=1e-6)
    assert figures["official"]["final_loss"] == pytest.approx(figures["tadkit"]["final_loss"], rel=1e-6)
    # the check switches droppath off on both sides (otherwise random paths would make the losses differ)
    assert all(m.drop_prob == 0.0 for m in same.modules() if type(m).__name__ == "AffineDropPath")
    other = build_actionformer_method(**config)
    other.load_state_dict(reference.state_dict())
    with torch.no_grad():
        other.cls_head.cls_head.conv.bias.add_(1.0)  # a different model: classification loss moves a lot
    with pytest.raises(TadkitError, match="cls_loss"):
        bench.compare_losses(VideoListLosses(reference, bench), other, videos, rtol=1e-4)


@pytest.mark.parametrize("argv, message", [
    ([], "one of the arguments --official --tadkit-only is required"),
    (["--tadkit-only", "--official", "x"], "not allowed with"),
    (["--tadkit-only", "--iters", "0"], "--iters must be >= 1"),
    (["--tadkit-only", "--repeats", "0"], "--repeats must be >= 1"),
    (["--tadkit-only", "--batch", "0"], "--batch must be >= 1"),
    (["--tadkit-only", "--droppath", "1"], "--droppath must be in"),
    (["--official", "x", "--window", "3"], "--window 3 breaks the official local attention"),
])
def test_bad_arguments_exit_2_with_the_reason(bench, capsys, argv, message):
    with pytest.raises(SystemExit) as exit_info:
        bench.parse_args(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("extra, field", [
    (["--embd-dim", "10", "--n-head", "4"], "n_head"),  # 10 is not a multiple of 4 heads
    (["--window", "4"], "n_mha_win_size"),  # windows are odd
    (["--max-seq-len", "100"], "max_seq_len"),  # not a multiple of 128
])
def test_sizes_the_model_refuses_exit_2_naming_the_field(bench, capsys, extra, field):
    argv = ["--tadkit-only", *TINY, *extra]
    assert bench.main(argv) == 2
    assert f"field {field}" in capsys.readouterr().err


def test_missing_official_checkout_says_what_to_do_and_exits_2(bench, tmp_path, capsys):
    assert bench.main(["--official", str(tmp_path / "absent"), *TINY]) == 2
    err = capsys.readouterr().err
    assert "is not an ActionFormer checkout" in err and "git clone https://github.com/happyharrycn" in err
    # a checkout whose NMS op is not built
    (tmp_path / "co" / "libs" / "modeling").mkdir(parents=True)
    (tmp_path / "co" / "libs" / "modeling" / "meta_archs.py").write_text("")
    assert bench.main(["--official", str(tmp_path / "co"), *TINY]) == 2
    err = capsys.readouterr().err
    assert "nms_1d_cpu op is not built" in err and "setup.py build_ext --inplace" in err
    assert "libs" not in sys.modules  # nothing was imported from a broken checkout


def test_official_half_when_a_checkout_is_given(tmp_path):
    checkout = os.environ.get("TADKIT_ACTIONFORMER_OFFICIAL")
    if not checkout:
        pytest.skip("set TADKIT_ACTIONFORMER_OFFICIAL to a prepared official checkout (see the script docstring)")
    out = tmp_path / "speed.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    run = subprocess.run([sys.executable, str(SCRIPT), "--official", checkout, *TINY, "--json", str(out)],
                         capture_output=True, text=True, env=env, timeout=600)
    assert run.returncode == 0, run.stderr
    result = json.loads(out.read_text())
    for key in ("cls_loss", "reg_loss", "final_loss"):  # checked by the script before timing
        assert result["losses"]["tadkit"][key] == pytest.approx(result["losses"]["official"][key], rel=1e-4)
    assert result["train_ratio_tadkit_over_official"] > 0 and result["infer_ratio_tadkit_over_official"] > 0
    assert "ratio tadkit / official" in run.stdout
