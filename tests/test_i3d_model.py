"""I3D architecture with random weights: TF "SAME" padding, -inf pool padding, shapes, BN folding."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from tadkit.video.i3d import I3D, I3DConfig, MaxPool3dSame, Unit3D, same_padding, temporal_output_length


def _randomize_(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Random batch-norm statistics and offsets so that BN is not the identity."""
    g = torch.Generator().manual_seed(seed)
    for name, buf in model.named_buffers():
        if name.endswith("running_mean"):
            buf.copy_(torch.randn(buf.shape, generator=g) * 0.1)
        elif name.endswith("running_var"):
            buf.copy_(torch.rand(buf.shape, generator=g) + 0.5)
    for name, param in model.named_parameters():
        if name.endswith("bn.bias"):
            param.data.copy_(torch.randn(param.shape, generator=g) * 0.1)
    return model


@given(size=st.integers(1, 300), kernel=st.integers(1, 7), stride=st.integers(1, 3))
@settings(max_examples=300, deadline=None)
def test_same_padding_is_tf_rule(size, kernel, stride):
    before, after = same_padding(size, kernel, stride)
    out = math.ceil(size / stride)
    # TF: output ceil(n / s); the window of the last output ends exactly at the padded end
    assert (size + before + after - kernel) // stride + 1 == out
    assert after - before in (0, 1)  # the odd element goes AFTER
    assert before + after == max((out - 1) * stride + kernel - size, 0)


def test_stride2_conv_pads_the_odd_element_at_the_end():
    torch.manual_seed(0)
    unit = Unit3D(1, 1, (7, 7, 7), (2, 2, 2), batch_norm=False, relu=False)
    x = torch.randn(1, 1, 8, 8, 8)  # out 4, total pad 5 -> (2, 3) per dimension
    got = unit(x)
    tf_like = F.conv3d(F.pad(x, (2, 3, 2, 3, 2, 3)), unit.conv.weight, stride=2)
    torch_like = F.conv3d(F.pad(x, (3, 2, 3, 2, 3, 2)), unit.conv.weight, stride=2)
    assert got.shape == (1, 1, 4, 4, 4)
    torch.testing.assert_close(got, tf_like)
    assert not torch.allclose(got, torch_like, atol=1e-3)


def test_max_pool_padding_never_wins():
    x = -1.0 - torch.rand(1, 2, 5, 9, 9)  # all values < -1: a zero pad would show up as 0
    out = MaxPool3dSame((3, 3, 3), (2, 2, 2))(x)
    assert out.shape == (1, 2, 3, 5, 5)
    assert (out < -1).all()
    out = MaxPool3dSame((1, 3, 3), (1, 2, 2))(x)  # asymmetric (0, 1) spatial pad
    assert out.shape == (1, 2, 5, 5, 5) and (out < -1).all()
    # the last window of an asymmetric pad holds only the last real element and the pad
    torch.testing.assert_close(out[..., -1, -1], x[..., -2:, -2:].amax(dim=(-2, -1)))


@pytest.fixture(scope="module")
def random_i3d() -> I3D:
    torch.manual_seed(0)
    return _randomize_(I3D()).eval()


@pytest.mark.parametrize("stack", [9, 21])
def test_end_point_shapes(random_i3d, stack):
    x = torch.rand(1, 3, stack, 224, 224) * 2 - 1
    seen = {}
    hook = random_i3d.Mixed_5c.register_forward_hook(lambda module, args, out: seen.update(mixed_5c=out))
    try:
        with torch.inference_mode():
            features, logits = random_i3d(x)
    finally:
        hook.remove()
    mixed_5c = seen["mixed_5c"]
    assert mixed_5c.shape == (1, 1024, temporal_output_length(stack), 7, 7)
    assert features.shape == (1, 1024) and logits.shape == (1, 400)
    # feature = (2, 7, 7) stride-1 pool then time mean; logits = head averaged over time (linear)
    pooled = F.avg_pool3d(mixed_5c, (2, 7, 7), stride=1)
    torch.testing.assert_close(features, pooled.mean(dim=(2, 3, 4)))
    head = random_i3d.Logits.Conv3d_0c_1x1.conv
    expected = features @ head.weight.detach().flatten(1).T + head.bias.detach()
    torch.testing.assert_close(logits, expected, atol=1e-4, rtol=1e-4)


def test_too_short_stack_is_refused(random_i3d):
    with pytest.raises(ValueError, match="too small"):
        random_i3d(torch.zeros(1, 3, 8, 224, 224))


def test_fused_batch_norm_gives_the_same_features():
    torch.manual_seed(1)
    plain = _randomize_(I3D(I3DConfig(in_channels=2)), seed=3).eval()
    fused = _randomize_(I3D(I3DConfig(in_channels=2)), seed=3).eval()
    fused.load_state_dict(plain.state_dict())
    fused.fuse_batch_norm_()
    assert not any(m.bn is not None for m in fused.modules() if isinstance(m, Unit3D))
    x = torch.rand(1, 2, 9, 224, 224) * 2 - 1
    with torch.inference_mode():
        a, la = plain(x)
        b, lb = fused(x.contiguous(memory_format=torch.channels_last_3d))
    torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(la, lb, atol=1e-4, rtol=1e-4)


def test_state_dict_layout_mirrors_deepmind_names():
    keys = I3D().state_dict().keys()
    assert "Conv3d_1a_7x7.conv.weight" in keys
    assert "Mixed_4b.Branch_1.Conv3d_0b_3x3.bn.running_var" in keys
    assert "Logits.Conv3d_0c_1x1.conv.bias" in keys
    assert not any(k.endswith("bn.weight") or "num_batches_tracked" in k for k in keys)  # no BN scale
    # 57 conv units with BN (conv weight + offset + mean + var) + the logits conv (weight + bias)
    assert len(keys) == 57 * 4 + 2
