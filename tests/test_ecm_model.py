"""ECM model: the batched streams against a loop re-statement of the official forward, losses against
torch's reference losses per video, gradients, configs and bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from tadkit.errors import TadkitError
from tadkit.methods.ecm.model import ECM, ECMConfig, build_ecm
from tadkit.methods.ecm.official import from_official_state_dict

SMALL = dict(in_dim=10, hidden_dim=12, num_classes=5, topk_ratio=0.25)


def loop_forward_train(model: ECM, x: torch.Tensor, labels: torch.Tensor, groups: int):
    """The official is_train=True forward, one video and one GT class at a time (as network.py loops)."""
    f, w = model.base_module, model.classifier_module.conv.weight  # w (C, H, 1)
    c = w.shape[0]
    cas = F.conv1d(f(x), w)
    k = int(x.shape[2] * model.config.topk_ratio)
    score_pre = cas.topk(k, dim=2)[0].mean(dim=2)
    weights = model.attention_module(cas)

    def aggregate(wt, feat):  # wt (1, C, T), feat (1, D, T) -> (C, D, G)
        cols = [wt[0, :, g::groups] @ feat[0, :, g::groups].T for g in range(groups)]
        return torch.stack(cols, dim=2)

    def post(agg):  # (C, D, G) -> (C,) grouped conv with the classifier, mean over groups
        hidden = f(agg).reshape(1, -1, groups)
        return F.conv1d(hidden, w, groups=c)[0].mean(dim=1)

    score_post = torch.stack([post(aggregate(weights[b:b + 1], x[b:b + 1])) for b in range(x.shape[0])])
    agg_rows = []
    for b in range(x.shape[0]):
        gt = torch.where(labels[b] == 1)[0].tolist()
        qs = [post(aggregate(weights[b:b + 1], x[b:b + 1] * (1 - weights[b:b + 1, g:g + 1]))) for g in gt]
        q_bar = torch.stack(qs).mean(dim=0).clone()
        for i, g in enumerate(gt):
            q_bar[g] = qs[i][g]
        agg_rows.append(torch.softmax(torch.cat([score_post[b], q_bar]), dim=0))
    return cas, score_pre, score_post, torch.stack(agg_rows)


@pytest.mark.parametrize("t, groups", [(37, 3), (30, 3), (16, 4), (9, 2)])
def test_batched_streams_equal_official_loop(t, groups):
    torch.manual_seed(t)
    model = ECM(ECMConfig(**SMALL, groups=groups)).eval()
    x = torch.randn(4, 10, t)
    labels = torch.tensor([[1, 0, 1, 0, 1], [0, 1, 0, 0, 0], [1, 1, 1, 1, 1], [0, 0, 0, 1, 0]], dtype=torch.float32)
    with torch.no_grad():
        out = model.forward_train(x, labels)
        cas, pre, post, agg = loop_forward_train(model, x, labels, groups)
    torch.testing.assert_close(out["cas"], cas, rtol=0, atol=1e-5)
    torch.testing.assert_close(out["score_pre"], pre, rtol=0, atol=1e-5)
    torch.testing.assert_close(out["score_post"], post, rtol=0, atol=1e-5)
    torch.testing.assert_close(out["score_agg"], agg, rtol=0, atol=1e-6)
    assert torch.allclose(out["score_agg"].sum(dim=1), torch.ones(4))


def test_losses_equal_per_video_reference():
    torch.manual_seed(0)
    model = ECM(ECMConfig(**SMALL, loss_agg_coef=3.0, loss_cc_coef=0.5)).eval()
    x = torch.randn(3, 10, 20)
    labels = torch.tensor([[1, 0, 1, 0, 0], [0, 0, 0, 0, 1], [1, 1, 1, 0, 0]], dtype=torch.float32)
    with torch.no_grad():
        out = model.forward_train(x, labels)
        losses = model.loss(out, {"video_labels": labels})
    norm = labels / labels.sum(dim=1, keepdim=True)
    ce_pre = -(norm * out["score_pre"].log_softmax(1)).sum(1).mean()
    ce_post = -(norm * out["score_post"].log_softmax(1)).sum(1).mean()
    mse = ((out["score_pre"] - out["score_post"]) ** 2).mean()
    agg = 0.0
    for b in range(3):
        gt = torch.where(labels[b] == 1)[0]
        picked = out["score_agg"][b, torch.cat([gt, gt + 5])]
        agg += F.binary_cross_entropy(picked, torch.cat([torch.ones(len(gt)), torch.zeros(len(gt))]))
    agg = agg / 3
    for name, ref in (("pre", ce_pre), ("post", ce_post), ("cls_consistency", mse), ("agg_consistency", agg)):
        assert float(losses[name]) == pytest.approx(float(ref), rel=1e-5), name
    assert float(losses["total"]) == pytest.approx(float(ce_pre + ce_post + 0.5 * mse + 3.0 * agg), rel=1e-5)


def test_training_step_reaches_every_parameter_and_learns():
    """All parameters get gradient (DDP needs it); a separable toy problem is learned in a few steps."""
    torch.manual_seed(1)
    model = ECM(ECMConfig(in_dim=6, hidden_dim=16, num_classes=3, topk_ratio=0.25, dropout=0.0))
    t = 24
    x = 0.1 * torch.randn(12, 6, t)
    labels = torch.zeros(12, 3)
    for b in range(12):  # class c is a burst on feature channel c
        c = b % 3
        labels[b, c] = 1
        start = (5 * b) % (t - 6)
        x[b, c, start:start + 6] += 3.0
    batch = {"features": x, "video_labels": labels}
    opt = torch.optim.Adam(model.parameters(), lr=5e-3)
    model.train()
    first = None
    for step in range(40):
        losses = model.loss(model(batch), batch)
        opt.zero_grad()
        losses["total"].backward()
        if step == 0:
            first = losses["total"].item()
            for name, p in model.named_parameters():
                assert p.grad is not None and p.grad.abs().sum() > 0, name
        opt.step()
    assert losses["total"].item() < 0.5 * first
    model.eval()
    with torch.no_grad():
        acts = model.decode(model({"features": x}), {"features": x})
    predicted = torch.stack([a.video_scores for a in acts]).argmax(1)
    assert (predicted == labels.argmax(1)).float().mean() == 1.0
    # the CAS peaks inside the burst of the video's class
    peak = acts[0].cas[0].argmax().item()
    assert 0 <= peak < 6 + 1


def test_eval_branch_outputs_and_decode():
    torch.manual_seed(2)
    model = build_ecm(**SMALL).eval()
    x = torch.randn(2, 10, 40)
    with torch.no_grad():
        out = model({"features": x})
    assert set(out) == {"cas", "score_pre", "video_scores"}
    k = int(40 * 0.25)
    ref = np.sort(out["cas"].numpy(), axis=2)[:, :, -k:].mean(axis=2)
    np.testing.assert_allclose(out["score_pre"].numpy(), ref, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out["video_scores"], out["score_pre"].softmax(1))
    acts = model.decode(out, {"meta": [{"video_id": "a", "valid_length": 40}, {"video_id": "b", "valid_length": 40}]})
    assert [a.cas.shape for a in acts] == [(5, 40), (5, 40)] and acts[1].video_scores.shape == (5,)
    with pytest.raises(TadkitError) as info:
        model.loss(out, {"video_labels": torch.ones(2, 5)})
    assert info.value.field == "outputs"


def test_config_presets_rebuild_and_official_widths():
    model = build_ecm(preset="anet13", num_classes=200, in_dim=16, hidden_dim=8)
    assert model.config.topk_ratio == 0.6 and model.config.loss_agg_coef == 1.0 and model.topk(100) == 60
    assert build_ecm(preset="anet12").topk(100) == 25 and build_ecm().topk(750) == 93
    again = build_ecm(**model.config_dict())
    assert again.config == model.config
    official = ECM()
    counts = {n: p.numel() for n, p in official.named_parameters()}
    assert counts["base_module.conv_1.weight"] == 2048 * 2048 * 3
    assert counts["classifier_module.conv.weight"] == 20 * 2048 and "classifier_module.conv.bias" not in counts
    assert sum(counts.values()) == 2 * (2048 * 2048 * 3 + 2048) + 20 * 2048 + 20 * 20 + 20
    with pytest.raises(TadkitError) as info:
        build_ecm(hidden=3)
    assert info.value.field == "model.kwargs"
    with pytest.raises(TadkitError):
        build_ecm(preset="anet99")


def test_official_import_infers_widths_and_rejects_mismatch():
    source = ECM(ECMConfig(in_dim=7, hidden_dim=9, num_classes=4))
    wrapped = {"epoch": 3, "state_dict": {"module." + k: v for k, v in source.state_dict().items()}}
    model = from_official_state_dict(wrapped, topk_ratio=0.6)
    assert (model.config.in_dim, model.config.hidden_dim, model.config.num_classes) == (7, 9, 4)
    assert model.config.topk_ratio == 0.6
    for k, v in source.state_dict().items():
        assert torch.equal(model.state_dict()[k], v)
    with pytest.raises(TadkitError):
        from_official_state_dict(source.state_dict(), num_classes=5)
    bad = dict(source.state_dict())
    bad.pop("attention_module.conv_1.bias")
    with pytest.raises(TadkitError) as info:
        from_official_state_dict(bad)
    assert "attention_module.conv_1.bias" in str(info.value)


def test_bad_training_input_names_the_video():
    model = build_ecm(**SMALL).train()
    x = torch.randn(2, 10, 12)
    labels = torch.tensor([[1, 0, 0, 0, 0], [0, 0, 0, 0, 0]], dtype=torch.float32)
    meta = [{"video_id": "vid_a", "valid_length": 12}, {"video_id": "vid_b", "valid_length": 12}]
    with pytest.raises(TadkitError) as info:
        model({"features": x, "video_labels": labels, "meta": meta})
    assert info.value.video == "vid_b" and info.value.field == "video_labels"
    with pytest.raises(TadkitError) as info:
        model({"features": x, "meta": meta})
    assert info.value.field == "video_labels"
    short = [{"video_id": "vid_a", "valid_length": 12}, {"video_id": "vid_b", "valid_length": 9}]
    with pytest.raises(TadkitError) as info:
        model({"features": x, "video_labels": torch.ones(2, 5), "meta": short})
    assert info.value.video == "vid_b" and info.value.field == "valid_length"
    with pytest.raises(TadkitError) as info:
        model({"features": torch.randn(2, 11, 12), "video_labels": torch.ones(2, 5)})
    assert info.value.field == "features"


def test_aggregation_loss_gradient_stays_finite_when_the_softmax_saturates():
    """nn.BCELoss semantics also in the backward: a softmax entry that underflows to exactly 0 (or 1) gives
    the clamped -100 log and a finite gradient, not 0 * inf = NaN (what made long synthetic runs diverge)."""
    from tadkit.methods.ecm.model import ECMConfig, ecm_losses

    num_classes = 4
    logits = torch.zeros(2, 2 * num_classes, dtype=torch.float32)
    logits[0, num_classes + 1] = 200.0  # the suppressed score of a GT class takes all the mass: others are 0.0
    logits[1, 0] = -200.0  # the s_post entry of a GT class underflows to 0.0
    logits.requires_grad_(True)
    score_agg = torch.softmax(logits, dim=1)
    assert score_agg[0, 1].item() == 0.0 and score_agg[0, num_classes + 1].item() == 1.0
    labels = torch.tensor([[0.0, 1.0, 0.0, 0.0], [1.0, 0.0, 0.0, 1.0]])
    pre = torch.randn(2, num_classes, requires_grad=True)
    post = torch.randn(2, num_classes, requires_grad=True)
    losses = ecm_losses(pre, post, score_agg, labels, ECMConfig(num_classes=num_classes))
    reference = torch.nn.BCELoss()  # the official per-video call: mean over the 2|GT| entries
    expected = []
    for b in range(2):
        gt = labels[b].bool()
        entries = torch.cat([score_agg[b, :num_classes][gt], score_agg[b, num_classes:][gt]])
        target = torch.cat([torch.ones(int(gt.sum())), torch.zeros(int(gt.sum()))])
        expected.append(reference(entries, target))
    assert losses["agg_consistency"].item() == pytest.approx(torch.stack(expected).mean().item(), rel=1e-6)
    assert losses["agg_consistency"].item() > 40.0  # the clamped -log(0) = 100 terms are there
    losses["total"].backward()
    assert torch.isfinite(logits.grad).all() and torch.isfinite(pre.grad).all()
