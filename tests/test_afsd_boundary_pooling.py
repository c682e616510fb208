"""Boundary max pooling (AFSD spec §2.5): vectorised version vs a literal port of the CUDA kernel."""

from __future__ import annotations

import pytest
import torch

from tadkit.errors import TadkitError
from tadkit.methods.afsd.boundary_pooling import boundary_argmax, boundary_max_pool, boundary_max_pool_loop


def _random_regions(n: int, k: int, t: int, gen: torch.Generator) -> torch.Tensor:
    # fractional, negative, beyond-T and reversed bounds all occur
    return torch.rand(n, k, 4, generator=gen) * (t + 24) - 12


@pytest.mark.parametrize("t", [1, 2, 3, 5, 8, 17, 64, 256])
def test_equals_loop_port_on_random_regions(t: int) -> None:
    gen = torch.Generator().manual_seed(t)
    x = torch.randn(2, 6, t, generator=gen)
    regions = _random_regions(2, 11, t, gen)
    value, arg = boundary_max_pool_loop(x, regions)
    assert torch.equal(boundary_argmax(x, regions), arg)
    assert torch.equal(boundary_max_pool(x, regions), value)


def test_equals_loop_port_with_many_ties() -> None:
    gen = torch.Generator().manual_seed(1)
    x = torch.randint(0, 3, (3, 4, 40), generator=gen).float()  # lots of equal maxima
    regions = _random_regions(3, 30, 40, gen)
    value, arg = boundary_max_pool_loop(x, regions)
    assert torch.equal(boundary_argmax(x, regions), arg)
    assert torch.equal(boundary_max_pool(x, regions), value)


def test_edge_cases_by_hand() -> None:
    x = torch.tensor([[[5.0, 1.0, 7.0, 7.0, 2.0], [0.0, 9.0, 3.0, 4.0, 8.0]]])  # C=2: one start, one end channel
    regions = torch.tensor(
        [
            [
                [-0.9, 1.9, 3.0, 4.0],  # trunc(-0.9)=0, trunc(1.9)=1 -> x[0:2] max 5; end [3, 4] -> 8
                [3.0, 1.0, 4.0, 0.0],  # hi < lo: value at lo -> 7 ; 8
                [2.0, 3.0, -7.0, -1.0],  # tie 7, 7 -> 7 (argmax 2) ; both clamp to 0 -> 0
                [10.0, 20.0, -0.5, 0.5],  # clamped to T-1 -> 2 ; trunc both 0 -> 0
                [0.0, 4.0, 0.0, 4.0],  # whole range: 7 (first at 2) ; 9
            ]
        ]
    )
    value = boundary_max_pool(x, regions)
    assert value[0, 0].tolist() == [5.0, 7.0, 7.0, 2.0, 7.0]
    assert value[0, 1].tolist() == [8.0, 8.0, 0.0, 0.0, 9.0]
    assert boundary_argmax(x, regions)[0, 0].tolist() == [0, 3, 2, 4, 2]
    loop_value, _ = boundary_max_pool_loop(x, regions)
    assert torch.equal(value, loop_value)


def test_no_grad_and_grad_paths_agree() -> None:
    gen = torch.Generator().manual_seed(9)
    x = torch.randn(2, 8, 50, generator=gen)
    regions = _random_regions(2, 13, 50, gen)
    value = boundary_max_pool(x, regions)  # value sparse table
    with_grad = boundary_max_pool(x.clone().requires_grad_(True), regions)  # arg-max keys + gather
    assert torch.equal(value, with_grad.detach())
    assert torch.equal(boundary_max_pool(x.double(), regions), value.double())


def test_gradcheck_double() -> None:
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(2, 4, 13, generator=gen, dtype=torch.float64, requires_grad=True)
    regions = _random_regions(2, 7, 13, gen).double()
    assert torch.autograd.gradcheck(lambda inp: boundary_max_pool(inp, regions), (x,))
    assert torch.autograd.gradgradcheck(lambda inp: boundary_max_pool(inp, regions), (x,))


def test_gradient_goes_to_first_argmax_and_accumulates() -> None:
    x = torch.tensor([[[1.0, 4.0, 4.0, 0.0, 4.0], [2.0, 2.0, 2.0, 2.0, 2.0]]], requires_grad=True)
    regions = torch.tensor([[[0.0, 4.0, 1.0, 3.0], [2.0, 4.0, 3.0, 4.0], [1.0, 2.0, 4.0, 2.0]]])
    out = boundary_max_pool(x, regions)
    out.backward(torch.tensor([[[1.0, 10.0, 100.0], [1.0, 10.0, 100.0]]]))
    # start channel: ranges [0,4] -> first 4.0 at 1; [2,4] -> at 2; [1,2] -> at 1  => grads 1+100 at 1, 10 at 2
    assert x.grad[0, 0].tolist() == [0.0, 101.0, 10.0, 0.0, 0.0]
    # end channel (all equal): [1,3] -> 1; [3,4] -> 3; hi < lo at 4 -> 4
    assert x.grad[0, 1].tolist() == [0.0, 1.0, 0.0, 10.0, 100.0]


def test_gradient_matches_kernel_backward_semantics_on_random_ties() -> None:
    gen = torch.Generator().manual_seed(5)
    x = torch.randint(0, 4, (2, 6, 20), generator=gen).float().requires_grad_(True)
    regions = _random_regions(2, 9, 20, gen)
    grad_out = torch.randn(2, 6, 9, generator=gen)
    boundary_max_pool(x, regions).backward(grad_out)
    _, arg = boundary_max_pool_loop(x, regions)
    expected = torch.zeros(2, 6, 20).scatter_add_(2, arg, grad_out)
    assert torch.allclose(x.grad, expected, atol=1e-6, rtol=0)


def test_rejects_bad_shapes() -> None:
    with pytest.raises(TadkitError, match="even channel count"):
        boundary_max_pool(torch.zeros(1, 3, 5), torch.zeros(1, 2, 4))
    with pytest.raises(TadkitError, match="regions"):
        boundary_max_pool(torch.zeros(1, 2, 5), torch.zeros(1, 2, 3))
