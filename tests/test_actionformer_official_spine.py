"""ActionFormer through tadkit's engine protocol (``forward(batch)`` / ``loss`` / ``decode`` and the
pipeline's steps -> seconds) against the golden fixture of the OFFICIAL code.

The fixture is ``$TADKIT_ACTIONFORMER_FIXTURE`` (default ``<shared>/fixtures/actionformer_official_small.npz``,
see tests/actionformer_golden.py); every size and setting comes from its .json.

Tolerances:

* Training losses: our network runs in float64 on the official weights and inputs; the official run is
  float32, whose head outputs carry relative rounding of order 1e-6..1e-5 (measured in
  tests/test_actionformer_official_model.py). A loss is a positive sum of terms that are Lipschitz in those
  outputs, so its relative error is bounded by theirs: ``rtol = 1e-4`` leaves a factor 10 over the worst
  head-output bound, while a wrong padding, mask or target rule moves a loss by 1e-2 or more.
* Detections: the fixture's raw eval head outputs go through ``decode`` and the pipeline's
  ``t0 + x * step`` (float64) mapping, and must be the official ``model.eval()`` detections under the
  derived tolerances of tests/test_actionformer_official_decode.py (reused, not copied).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from actionformer_golden import Golden, load_golden
from test_actionformer_official_decode import assert_same_detections
from tadkit.data.features import FeatureTiming
from tadkit.methods.actionformer.inference import resolve_test_config
from tadkit.methods.actionformer.method import ActionFormerMethod, from_official_state_dict
from tadkit.postprocess.merge import windows_to_detections

pytestmark = pytest.mark.usefixtures("one_torch_thread")
STATE = "state_dict/"


@pytest.fixture(scope="module")
def golden() -> Golden:
    return load_golden()


def official_method(golden: Golden) -> ActionFormerMethod:
    state = {k[len(STATE):]: torch.from_numpy(v) for k, v in golden.arrays.items() if k.startswith(STATE)}
    return from_official_state_dict(state, **golden.model)


def video_batch(golden: Golden, indices: list[int], dtype: torch.dtype = torch.float32) -> dict:
    """The fixture's videos as tadkit's collate_windows lays out a batch (zero-padded to the longest)."""
    feats = [golden.arrays[f"input/v{b}/feats"] for b in indices]
    longest = max(f.shape[1] for f in feats)
    batch = np.zeros((len(feats), feats[0].shape[0], longest), dtype=np.float64)
    for i, f in enumerate(feats):
        batch[i, :, : f.shape[1]] = f
    meta, targets = [], []
    for b, f in zip(indices, feats):
        video = golden.videos[b]
        timing = FeatureTiming.clip_centre(video["fps"], video["feat_stride"], video["feat_num_frames"])
        meta.append({"video_id": video["video_id"], "t0": timing.t0, "step": timing.seconds_per_feature,
                     "valid_length": int(f.shape[1])})
        targets.append({"segments": torch.from_numpy(golden.arrays[f"input/v{b}/segments"]).to(dtype),
                        "labels": torch.from_numpy(golden.arrays[f"input/v{b}/labels"]).long()})
    return {"features": torch.from_numpy(batch).to(dtype), "meta": meta, "targets": targets}


def test_official_actionformer_training_losses_through_forward_and_loss(golden: Golden) -> None:
    model = official_method(golden).double().train()
    assert float(model.loss_normaliser.value) == float(golden.model["train_cfg"]["init_loss_norm"])
    batch = video_batch(golden, list(range(len(golden.videos))), torch.float64)
    with torch.no_grad():
        losses = model.loss(model(batch), batch)
    for ours, official in (("cls", "cls_loss"), ("reg", "reg_loss"), ("total", "final_loss")):
        expected = float(golden.arrays[f"train/loss/{official}"])
        assert float(losses[ours]) == pytest.approx(expected, rel=1e-4), ours
    # the normaliser moved once, towards this batch's positives (official: once per training forward)
    assert float(model.loss_normaliser.value) != float(golden.model["train_cfg"]["init_loss_norm"])


def test_official_actionformer_compact_padding_gives_the_outputs_of_the_official_padding(golden: Golden) -> None:
    """Deviation 4 of method.py: padding to the batch's longest video (rounded up to max_div_factor) instead
    of the official max_seq_len changes nothing on real steps. The fixture's weights with 3-step windows and
    a max_seq_len longer than every video make the two paddings differ; float64 on both sides."""
    values = dict(golden.model, n_mha_win_size=3)
    strides = golden.strides
    multiple = strides[-1] * 2  # level stride x (window // 2) x 2 for window 3
    longest = max(golden.arrays[f"input/v{b}/feats"].shape[1] for b in range(len(golden.videos)))
    values["max_seq_len"] = (longest // multiple + 2) * multiple
    state = {k[len(STATE):]: torch.from_numpy(v) for k, v in golden.arrays.items() if k.startswith(STATE)}
    model = from_official_state_dict(state, **values).double()
    indices = list(range(len(golden.videos)))
    for training in (False, True):
        model.train(training)
        batch = video_batch(golden, indices, torch.float64)
        feats, mask = model.pad_batch(batch)
        official_length = model.padded_length(longest, training)  # the official preprocessing's rule
        assert feats.shape[-1] < official_length and feats.shape[-1] % multiple == 0
        assert float(feats[~mask[:, None, :].expand_as(feats)].abs().sum()) == 0.0  # zero padding
        wide = torch.nn.functional.pad(feats, (0, official_length - feats.shape[-1]))
        wide_mask = torch.nn.functional.pad(mask, (0, official_length - mask.shape[-1]))
        with torch.no_grad():
            compact, official = model.forward_heads(feats, mask), model.forward_heads(wide, wide_mask)
        for level, stride in enumerate(strides):
            real = -(-feats.shape[-1] // stride)
            level_mask = compact.masks[level]
            assert torch.equal(level_mask, official.masks[level][:, :real])
            for name in ("cls_logits", "offsets"):
                ours, theirs = getattr(compact, name)[level], getattr(official, name)[level][:, :real]
                torch.testing.assert_close(ours[level_mask], theirs[level_mask], rtol=1e-9, atol=1e-9)


def test_official_actionformer_decode_protocol_gives_the_official_detections(golden: Golden) -> None:
    model = official_method(golden).eval()
    config = resolve_test_config(golden.model["test_cfg"])
    classes = [f"c{i}" for i in range(int(golden.model["num_classes"]))]
    for b, video in enumerate(golden.videos):
        cls, off, mask = golden.eval_outputs(b)
        outputs = {"cls_logits": [x[None] for x in cls], "offsets": [x[None] for x in off],
                   "masks": [x[None].bool() for x in mask]}
        batch = video_batch(golden, [b])
        (steps,) = model.decode(outputs, batch)
        dets = windows_to_detections([steps], batch["meta"], classes, clip_to_video={video["video_id"]: video["duration"]})
        order = np.argsort(-dets.score, kind="stable")
        labels = np.array([classes.index(c) for c in dets.label[order]])
        ours = (torch.from_numpy(np.stack([dets.start[order], dets.end[order]], 1)),
                torch.from_numpy(dets.score[order]), torch.from_numpy(labels))
        official = tuple(golden.arrays[f"test/v{b}/{key}"] for key in ("segments", "scores", "labels"))
        assert_same_detections(ours, official, video=video, config=config)
