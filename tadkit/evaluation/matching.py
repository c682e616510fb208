"""Vectorized building blocks of the evaluators.

Both official evaluators are sequential greedy procedures: *agents* visited in a fixed order
(predictions by score for ActivityNet, ground truth in file order for THUMOS14) each take the first
still-free *item* on their preference list. :func:`greedy_first_free` reproduces that result exactly
without a Python loop per agent: agents of different groups (video x class x threshold) never
compete, so every round settles the next event of *every* group at once. The number of rounds is
the largest number of matches in one group (a few on ActivityNet, at most a few hundred on THUMOS14).
"""

from __future__ import annotations

import numpy as np

from tadkit.ops import tiou


def pairs_by_key(left_keys: np.ndarray, right_keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every (i, j) with ``left_keys[i] == right_keys[j]``, ordered by i then by j's position in right.

    Used to list all prediction x ground-truth pairs of the same video (and class) in one shot.
    """
    left_keys = np.asarray(left_keys, dtype=np.int64)
    right_keys = np.asarray(right_keys, dtype=np.int64)
    order = np.argsort(right_keys, kind="stable")
    sorted_keys = right_keys[order]
    lo = np.searchsorted(sorted_keys, left_keys, side="left")
    hi = np.searchsorted(sorted_keys, left_keys, side="right")
    counts = hi - lo
    total = int(counts.sum())
    left_idx = np.repeat(np.arange(len(left_keys), dtype=np.int64), counts)
    # offset of each output row inside its left element's run
    run_start = np.repeat(np.cumsum(counts) - counts, counts)
    within = np.arange(total, dtype=np.int64) - run_start
    right_idx = order[np.repeat(lo, counts) + within]
    return left_idx, right_idx


def tiou_activitynet(
    s1: np.ndarray, e1: np.ndarray, s2: np.ndarray, e2: np.ndarray, same_point_matches: bool = False
) -> np.ndarray:
    """Row-wise tIoU, the formula of :func:`tadkit.ops.tiou` (official ``segment_iou``).

    inter = max(0, min(e) - max(s)); union = len1 + len2 - inter; 0 where union <= 0. Bit-identical
    to the official code (IEEE addition is commutative), which matters for ties at a threshold.

    ``same_point_matches``: two zero-length segments at the same instant get 1 instead of 0. The
    official detection code computes 0/0 = NaN there, and NaN passes its threshold test, so such
    a prediction matches (real case: three zero-length GT of ActivityNet v1.3 validation, copied
    by the official sample submission). Zero-length pairs at different instants stay 0 (the
    official NaN would match those too, which is a bug, not a rule).
    """
    out = tiou(s1, e1, s2, e2)
    if same_point_matches:
        union = (e1 - s1) + (e2 - s2) - np.clip(np.minimum(e1, e2) - np.maximum(s1, s2), 0.0, None)
        out = np.where((union <= 0) & (s1 == s2) & (e1 == e2), 1.0, out)
    return out


def tiou_thumos(s1: np.ndarray, e1: np.ndarray, s2: np.ndarray, e2: np.ndarray) -> np.ndarray:
    """Row-wise tIoU as the THUMOS14 evalkit computes it (``intervalsingleoverlapvalseconds``).

    intersection / (max(e) - min(s)) when the intersection is > 0, else 0. Equal to the
    ActivityNet formula in exact arithmetic, but rounded differently, so kept separate.
    """
    inter = np.minimum(e1, e2) - np.maximum(s1, s2)
    out = np.zeros(inter.shape)
    hit = inter > 0  # most same-video pairs do not overlap: divide only where needed
    out[hit] = inter[hit] / (np.maximum(e1[hit], e2[hit]) - np.minimum(s1[hit], s2[hit]))
    return out


def greedy_first_free(
    group: np.ndarray, agent: np.ndarray, item: np.ndarray, num_agents: int, num_items: int
) -> tuple[np.ndarray, np.ndarray]:
    """Result of the sequential greedy "each agent, in order, takes its first free item".

    The candidate pairs must be sorted by (group, agent order, preference); an item belongs to
    exactly one group. Agent ids must increase with the visiting order inside a group.

    Returns ``(agent_item, item_agent)``: the item each agent took (-1 for none) and the agent that
    took each item (-1 for none).

    Why a round is exact: the first remaining pair of a group belongs to the earliest agent that
    still has a free candidate. Every agent before it has none, and free items only get fewer, so
    those agents stay unmatched; that agent takes its first free candidate, as the loop would.
    """
    agent_item = np.full(num_agents, -1, dtype=np.int64)
    item_agent = np.full(num_items, -1, dtype=np.int64)
    taken = np.zeros(num_items, dtype=bool)
    group = np.asarray(group, dtype=np.int64)
    agent = np.asarray(agent, dtype=np.int64)
    item = np.asarray(item, dtype=np.int64)
    while len(group):
        starts = np.flatnonzero(np.r_[True, group[1:] != group[:-1]])
        winners, won = agent[starts], item[starts]
        agent_item[winners] = won
        item_agent[won] = winners
        taken[won] = True
        # drop agents up to the winner (settled) and pairs whose item is now taken
        lengths = np.diff(np.r_[starts, len(group)])
        keep = (agent > np.repeat(winners, lengths)) & ~taken[item]
        group, agent, item = group[keep], agent[keep], item[keep]
    return agent_item, item_agent


def segment_starts(segment: np.ndarray) -> np.ndarray:
    """For a non-decreasing segment-id array, the index where each element's segment starts."""
    n = len(segment)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    is_start = np.r_[True, segment[1:] != segment[:-1]]
    return np.maximum.accumulate(np.where(is_start, np.arange(n), 0))


def segmented_cumsum(values: np.ndarray, segment: np.ndarray) -> np.ndarray:
    """Cumulative sum along the last axis restarting at each segment (integers: exact)."""
    total = np.cumsum(values, axis=-1)
    if values.shape[-1] == 0:
        return total
    starts = segment_starts(segment)
    before = np.concatenate([np.zeros(values.shape[:-1] + (1,), total.dtype), total[..., :-1]], axis=-1)
    return total - before[..., starts]


def segmented_suffix_max(values: np.ndarray, segment: np.ndarray) -> np.ndarray:
    """max(values[..., j] for j >= i in i's segment), along the last axis, exactly.

    Values are replaced by their rank among all distinct values and shifted by a per-segment
    integer offset so one ``maximum.accumulate`` cannot leak across segments (no float fudge).
    """
    if values.size == 0:
        return values.copy()
    uniq, rank = np.unique(values, return_inverse=True)
    rank = rank.reshape(values.shape).astype(np.int64)
    seg_rank = np.cumsum(np.r_[0, segment[1:] != segment[:-1]])  # 0..S-1 along the axis
    offset = (seg_rank[-1] - seg_rank) * (len(uniq) + 1)  # later segments get smaller offsets
    keyed = rank + offset
    suffix = np.maximum.accumulate(keyed[..., ::-1], axis=-1)[..., ::-1]
    return uniq[suffix - offset]
