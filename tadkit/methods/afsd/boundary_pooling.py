"""Boundary max pooling (AFSD, spec ``methods/afsd.md`` §2.5) in plain PyTorch, on any device.

``boundary_max_pool(x, regions)`` with ``x`` (N, C, T) and ``regions`` (N, K, 4) =
``(s_lo, s_hi, e_lo, e_hi)`` returns (N, C, K):

* channels ``c < C/2`` pool over ``s_lo..s_hi``, channels ``c >= C/2`` over ``e_lo..e_hi``;
* both bounds are truncated toward zero (C ``static_cast<int>``) and then clamped to ``[0, T-1]``;
* ranges are inclusive; when ``hi < lo`` the result is ``x[lo]`` (the kernel's loop does not run);
* the gradient goes to the FIRST arg-max of each range (the kernel updates on ``val > max`` only);
  repeated arg-maxes accumulate.

Implementation: a sparse table (range-maximum structure) built once per tensor and queried for all
regions and channels at once (no Python loop over regions or channels). Each element gets an int64
key that orders by value and then by EARLIER time (float32: the value's order-preserving bit image in
the high word, ``T-1-t`` in the low word; float64: its rank in a stable sort), so one ``max`` of keys
yields the first arg-max. Level ``j`` of the table holds the max key of ``[s, s + 2^j)``; a range of
length ``L`` is the max of two overlapping level-``floor(log2 L)`` blocks. Only levels up to the
longest range are built: memory O(N·C·T·log2(longest range)). The output is ``x.gather(-1, argmax)``,
so autograd routes the gradient to the first arg-max (accumulating repeats) and double backward works.
NaN inputs are not supported (the kernel's result with NaN depends on their position).

Deviation (documented in docs/afsd.md): the official CUDA backward reads the time length from
``grad_output.size(2)`` (= K) instead of ``input.size(2)`` (= T); when T != K (the frame-level pooling:
T = 256, K = level length; the SSL pooling: K = 3) it clamps and indexes with the wrong stride and sends
the gradient to wrong elements. We send it to the first arg-max of the range as the forward defines.
"""

from __future__ import annotations

import torch

from tadkit.errors import TadkitError


def _check(x: torch.Tensor, regions: torch.Tensor) -> None:
    if x.dim() != 3:
        raise TadkitError(f"expected input (N, C, T), got shape {tuple(x.shape)}", field="boundary_max_pool.input")
    n, c, t = x.shape
    if c % 2:
        raise TadkitError(f"needs an even channel count (start/end halves), got {c}", field="boundary_max_pool.input")
    if t < 1:
        raise TadkitError("empty time axis", field="boundary_max_pool.input")
    if regions.dim() != 3 or regions.shape[0] != n or regions.shape[2] != 4:
        raise TadkitError(
            f"expected regions ({n}, K, 4), got shape {tuple(regions.shape)}", field="boundary_max_pool.regions"
        )


def region_bounds(regions: torch.Tensor, length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, K, 4) float regions -> integer (N, K, 2) lows and highs (start pair, end pair): truncated
    toward zero, clamped to [0, length-1], and ``hi`` raised to ``lo`` when ``hi < lo``."""
    r = regions.detach()
    if r.is_floating_point():
        # trunc and clamping to integer bounds commute; clamping first keeps huge values in int range
        r = torch.nan_to_num(r, nan=0.0).clamp(-1.0, float(length)).trunc()
    bounds = r.to(torch.long).clamp(0, length - 1)
    lo = bounds[..., 0::2]
    hi = torch.maximum(bounds[..., 1::2], lo)
    return lo, hi


def _order_keys(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """int64 keys (N, C, T), unique within a row, whose maximum marks the FIRST arg-max of the row
    segment it is taken over; plus what turns a key back into a time index (None: the low 32 bits).

    float32 (and narrower floats, converted exactly): the value's order-preserving integer image in
    the high 32 bits, ``T - 1 - t`` in the low bits (ties -> smallest t). -0.0 is folded onto +0.0
    because the kernel's ``val > max`` treats them as equal. Other dtypes (float64): the position in
    a stable descending sort, negated.
    """
    t = x.shape[-1]
    if x.dtype in (torch.float32, torch.float16, torch.bfloat16):
        bits = (x.detach().float() + 0.0).view(torch.int32)
        key = torch.where(bits < 0, bits ^ 0x7FFFFFFF, bits).long() << 32
        return key | (t - 1 - torch.arange(t, device=x.device)), None
    order = torch.sort(x.detach(), dim=-1, descending=True, stable=True).indices
    rank = torch.empty_like(order).scatter_(-1, order, torch.arange(t, device=x.device).expand_as(order))
    return (t - 1) - rank, order


def _query_plan(x: torch.Tensor, regions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """Per output element (N, C, K): range start, level ``floor(log2 length)`` and right-block start;
    plus the number of sparse-table levels the longest range needs."""
    _check(x, regions)
    c, t = x.shape[1], x.shape[2]
    lo, hi = region_bounds(regions, t)  # (N, K, 2)
    pair = (torch.arange(c, device=x.device) >= c // 2).long()  # 0 = start pair, 1 = end pair
    lo_c = lo.permute(0, 2, 1)[:, pair, :]  # (N, C, K)
    hi_c = hi.permute(0, 2, 1)[:, pair, :]
    log2 = torch.zeros(t + 1, dtype=torch.long, device=x.device)
    for j in range(1, t.bit_length()):
        log2[1 << j :] += 1
    level = log2[hi_c - lo_c + 1]
    levels = int(level.max()) + 1 if level.numel() else 1
    return lo_c, level, hi_c - (1 << level) + 1, levels


def _range_max(keys: torch.Tensor, lo_c: torch.Tensor, level: torch.Tensor, right: torch.Tensor, levels: int) -> torch.Tensor:
    """Max of ``keys`` (N, C, T) over every queried range, through a sparse table built once.

    The table is time-major so that each level is built from contiguous slices:
    ``table[j * T + s, row]`` = max over ``[s, s + 2^j)`` of the row (rows = N*C); unused tails are never read.
    """
    n, c, t = keys.shape
    rows = n * c
    table = keys.new_empty(levels * t, rows)
    table[:t] = keys.reshape(rows, t).t()
    for j in range(1, levels):
        half, m = 1 << (j - 1), t - (1 << j) + 1
        prev = table[(j - 1) * t : j * t]
        torch.maximum(prev[:m], prev[half : half + m], out=table[j * t : j * t + m])
    base = level * t
    left = table.gather(0, (base + lo_c).reshape(rows, -1).t())
    right_ = table.gather(0, (base + right).reshape(rows, -1).t())
    return torch.maximum(left, right_).t().reshape(n, c, -1)


def boundary_argmax(x: torch.Tensor, regions: torch.Tensor) -> torch.Tensor:
    """First arg-max index (N, C, K) along time of every pooled range (no gradient)."""
    lo_c, level, right, levels = _query_plan(x, regions)
    keys, order = _order_keys(x)
    best = _range_max(keys, lo_c, level, right, levels)
    t = x.shape[-1]
    if order is None:
        return (t - 1) - (best & 0xFFFFFFFF)
    return order.gather(2, (t - 1) - best)


def boundary_max_pool(x: torch.Tensor, regions: torch.Tensor) -> torch.Tensor:
    """Boundary max pooling: (N, C, T) x (N, K, 4) regions -> (N, C, K); see the module docstring.

    When no gradient is needed the sparse table holds the values themselves (no arg-max keys).
    """
    if not (x.requires_grad and torch.is_grad_enabled()):
        lo_c, level, right, levels = _query_plan(x, regions)
        return _range_max(x.detach(), lo_c, level, right, levels)
    return x.gather(2, boundary_argmax(x, regions))


def boundary_max_pool_loop(x: torch.Tensor, regions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Literal port of ``boundary_max_pooling_kernel.cu`` (forward value and the first arg-max), one
    output element at a time. Reference for tests and the benchmark only: O(N·C·K·T) Python steps."""
    _check(x, regions)
    n_, c_, t_ = x.shape
    k_ = regions.shape[1]
    xs = x.detach().cpu().tolist()
    rs = regions.detach().cpu().tolist()
    out = torch.empty(n_, c_, k_, dtype=x.dtype)
    arg = torch.empty(n_, c_, k_, dtype=torch.long)
    for n in range(n_):
        for c in range(c_):
            seg_type = c // (c_ // 2)
            row = xs[n][c]
            for k in range(k_):
                lo = int(rs[n][k][seg_type * 2])  # static_cast<int> truncates toward zero
                hi = int(rs[n][k][seg_type * 2 + 1])
                lo = min(max(0, lo), t_ - 1)
                hi = min(max(0, hi), t_ - 1)
                best, best_i = row[lo], lo
                for i in range(lo + 1, hi + 1):
                    if row[i] > best:
                        best, best_i = row[i], i
                out[n, c, k] = best
                arg[n, c, k] = best_i
    return out.to(x.device), arg.to(x.device)


__all__ = ["boundary_argmax", "boundary_max_pool", "boundary_max_pool_loop", "region_bounds"]
