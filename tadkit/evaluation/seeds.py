"""Scores over training seeds: mean, std, min, max per protocol / tIoU / duration bin / class, and a
combined interval for seed variance plus video sampling (the method is in docs/evaluation.md).

Inputs are the seeds' own ``report.json`` dictionaries (what ``tadkit test`` writes per run), so a
summary is exactly the statistics of those reports; the combined interval also needs each seed's
bootstrap replicates (:func:`tadkit.evaluation.bootstrap.bootstrap_replicates`, the same video
draws for every seed). All values are fractions, like the reports; ``std`` is the sample standard
deviation (n - 1 in the denominator), ``None`` for a single seed.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np

from tadkit.errors import TadkitError

SUMMARY_FORMAT = "tadkit-seed-summary/1"


def describe(values: Sequence[float]) -> dict[str, Any]:
    """mean, std (n - 1; None below two values), min, max, n of the finite ``values``."""
    array = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=np.float64)
    n = int(array.size)
    if n == 0:
        return {"mean": None, "std": None, "min": None, "max": None, "n": 0}
    return {"mean": float(array.mean()), "std": float(array.std(ddof=1)) if n > 1 else None,
            "min": float(array.min()), "max": float(array.max()), "n": n}


def _same(values: list[Any], what: str) -> Any:
    if any(v != values[0] for v in values[1:]):
        raise TadkitError(f"the seeds' reports differ in {what}: {values}; test every seed with the same settings",
                          field=what)
    return values[0]


def _protocol_summary(results: list[Mapping[str, Any]]) -> dict[str, Any]:
    tiou = _same([list(r["tiou"]) for r in results], "tiou")
    classes = sorted({c for r in results for c in r.get("per_class", {})})
    per_class = {}
    for name in classes:
        rows = [r["per_class"][name] for r in results if name in r.get("per_class", {})]
        per_class[name] = {"AP": [describe([row[i] for row in rows]) for i in range(len(tiou))],
                           "average": describe([float(np.mean(row)) for row in rows])}
    return {
        "tiou": tiou,
        "mAP": [describe([r["mAP"][i] for r in results]) for i in range(len(tiou))],
        "average_mAP": describe([r["average_mAP"] for r in results]),
        "per_class": per_class,
    }


def _duration_summary(breakdowns: list[Mapping[str, Any]]) -> dict[str, Any]:
    tiou = _same([list(b["tiou"]) for b in breakdowns], "per_duration.tiou")
    names = _same([[bin_["name"] for bin_ in b["bins"]] for b in breakdowns], "per_duration.bins")
    bins = []
    for i, name in enumerate(names):
        rows = [b["bins"][i] for b in breakdowns if b["bins"][i]["num_gt"]]  # a bin without GT has no mAP
        first = breakdowns[0]["bins"][i]
        bins.append({"name": name, "low": first["low"], "high": first["high"],
                     "num_gt": describe([b["bins"][i]["num_gt"] for b in breakdowns]),
                     "mAP": [describe([row["mAP"][t] for row in rows]) for t in range(len(tiou))]})
    return {"protocol": breakdowns[0]["protocol"], "preset": breakdowns[0].get("preset"), "tiou": tiou, "bins": bins}


def combined_interval(points: Sequence[Sequence[float]], replicates: Sequence[np.ndarray],
                      confidence: float = 0.95) -> dict[str, Any]:
    """Seed variance + video bootstrap: pool every seed's replicates (same video draws for all seeds).

    ``points[s]``: seed s's mAP per tIoU; ``replicates[s]``: its (B, T) replicate mAPs. The pooled
    n x B values are the distribution of "a training with a random seed, scored on a resample of
    the test videos". Interval: their percentiles shifted by the pooled bootstrap bias (mean of
    the pooled replicates - mean of the seeds' point estimates), as the single-run bootstrap does,
    clipped to [0, 1].
    Also reported: the seed std (of the point estimates), the video std (root mean of the
    per-seed replicate variances) and the pooled std, per tIoU and for the average over tIoUs.
    """
    points_arr = np.asarray(points, dtype=np.float64)  # (S, T)
    reps = [np.asarray(r, dtype=np.float64) for r in replicates]
    if len(reps) != len(points_arr) or not reps or len({r.shape for r in reps}) != 1:
        raise TadkitError("every seed needs replicates of the same shape", field="bootstrap")
    alpha = (1.0 - confidence) / 2.0

    def one(point: np.ndarray, per_seed: list[np.ndarray]) -> dict[str, Any]:  # point (S,), per_seed S x (B,)
        pooled = np.concatenate(per_seed)
        bias = float(np.nanmean(pooled) - point.mean())
        low, high = np.nanquantile(pooled, [alpha, 1.0 - alpha])
        ci = [min(max(float(low) - bias, 0.0), 1.0), min(max(float(high) - bias, 0.0), 1.0)]  # mAP lies in [0, 1]
        return {"ci": ci, "ci_percentile": [float(low), float(high)],
                "bias": bias, "seed_std": float(point.std(ddof=1)) if len(point) > 1 else None,
                "video_std": float(np.sqrt(np.mean([np.nanvar(r) for r in per_seed]))),
                "pooled_std": float(np.nanstd(pooled))}

    per_tiou = [one(points_arr[:, t], [r[:, t] for r in reps]) for t in range(points_arr.shape[1])]
    average = one(points_arr.mean(axis=1), [r.mean(axis=1) for r in reps])
    return {"confidence": confidence, "n_seeds": len(reps), "n_resamples": int(reps[0].shape[0]),
            "mAP": per_tiou, "average_mAP": average}


def summarize_seeds(reports: Mapping[int, Mapping[str, Any]],
                    replicates: Mapping[int, Mapping[str, np.ndarray]] | None = None,
                    *, confidence: float = 0.95, bootstrap_seed: int = 0, checkpoint: str = "") -> dict[str, Any]:
    """The summary of ``{seed: report dict}`` (+ ``{seed: {protocol: (B, T) replicates}}`` for the
    combined intervals)."""
    if not reports:
        raise TadkitError("no seed reports to summarize", field="seeds")
    seeds = sorted(reports)
    ordered = [reports[s] for s in seeds]
    protocols = _same([sorted(r["protocols"]) for r in ordered], "protocols")
    summary: dict[str, Any] = {
        "format": SUMMARY_FORMAT, "seeds": seeds, "n": len(seeds), "checkpoint": checkpoint,
        "primary_protocol": _same([r.get("primary_protocol") for r in ordered], "primary_protocol"),
        "protocols": {}, "per_duration": _duration_summary([r["per_duration"] for r in ordered]),
    }
    for protocol in protocols:
        results = [r["protocols"][protocol] for r in ordered]
        entry = _protocol_summary(results)
        if replicates is not None:
            entry["combined"] = combined_interval([res["mAP"] for res in results],
                                                  [replicates[s][protocol] for s in seeds], confidence)
            entry["combined"]["bootstrap_seed"] = bootstrap_seed
        summary["protocols"][protocol] = entry
    return summary


def summarize_epoch_selection(selections: Mapping[int, Mapping[str, Any] | None]) -> dict[str, Any] | None:
    """Over seeds: the test score of each epoch choice (last / best on validation / best on test) and
    the optimism (best on test - best on validation), each as :func:`describe` statistics."""
    present = {s: sel for s, sel in selections.items() if sel}
    if not present:
        return None
    metric = _same([sel["metric"] for sel in present.values()], "epoch_selection.metric")
    out: dict[str, Any] = {"metric": metric, "per_seed": {str(s): sel for s, sel in present.items()}}
    for key in ("last", "best_on_val", "best_on_test"):
        values = [sel[key]["test"][metric] for sel in present.values() if key in sel]
        if values:
            out[key] = describe(values)
    for key in ("optimism", "best_on_test_minus_last"):
        values = [sel[key] for sel in present.values() if key in sel]
        if values:
            out[key] = describe(values)
    return out


def _pm(stats: Mapping[str, Any]) -> str:
    if stats["mean"] is None:
        return "-"
    std = stats["std"]
    return f"{100 * stats['mean']:.2f}" + (f"±{100 * std:.2f}" if std is not None else "")


def format_summary(summary: Mapping[str, Any]) -> str:
    """summary.txt: mAP % as mean ± std over seeds, ranges, combined intervals, per-duration and per-class."""
    lines = [f"{summary['n']} seed(s) {summary['seeds']}, checkpoint {summary.get('checkpoint') or 'last.pt'}; "
             "mAP % mean±std over seeds (std: n-1)"]
    order = [summary["primary_protocol"]] + [p for p in summary["protocols"] if p != summary["primary_protocol"]]
    for protocol in order:
        entry = summary["protocols"][protocol]
        lines += ["", f"protocol {protocol}",
                  "tIoU      " + " ".join(f"{t:>12.2f}" for t in entry["tiou"]) + f" {'avg':>12}"]
        cols = entry["mAP"] + [entry["average_mAP"]]
        lines.append("mean±std  " + " ".join(f"{_pm(c):>12}" for c in cols))
        lines.append("min..max  " + " ".join(f"{100 * c['min']:>5.2f}..{100 * c['max']:<5.2f}" if c["n"] else
                                             f"{'-':>12}" for c in cols))
        if "combined" in entry:
            comb = entry["combined"]
            ci = comb["mAP"] + [comb["average_mAP"]]
            pct = int(round(100 * comb["confidence"]))
            lines.append(f"{pct}% comb. " + " ".join(f"{100 * c['ci'][0]:>5.2f}..{100 * c['ci'][1]:<5.2f}"
                                                       for c in ci))
            avg = comb["average_mAP"]
            seed_std = "-" if avg["seed_std"] is None else f"{100 * avg['seed_std']:.2f}"
            lines.append(f"combined interval: seeds + {comb['n_resamples']} video resamples each; average mAP "
                         f"std from seeds {seed_std}, from videos {100 * avg['video_std']:.2f}")
    durations = summary["per_duration"]
    lines += ["", f"mAP % per GT duration ({durations['protocol']}, tIoU "
                  f"{', '.join(format(t, 'g') for t in durations['tiou'])}), mean±std over seeds"]
    for bin_ in durations["bins"]:
        lines.append(f"{bin_['name']:<5} " + " ".join(f"{_pm(s):>12}" for s in bin_["mAP"]))
    selection = summary.get("epoch_selection")
    if selection:
        lines += ["", f"epoch selection over seeds (test {selection['metric']} %, from each run's history.json), "
                      "mean±std:"]
        for key, label in (("last", "last evaluation"), ("best_on_val", "best on the held-out validation split"),
                           ("best_on_test", "best on the TEST set (optimistic; the official codes' choice)"),
                           ("optimism", "optimism: best on test - best on validation"),
                           ("best_on_test_minus_last", "best on test - last")):
            if key in selection:
                lines.append(f"{label:<64} {_pm(selection[key]):>12}  (n={selection[key]['n']})")
    primary = summary["protocols"][summary["primary_protocol"]]
    lines += ["", f"AP % per class ({summary['primary_protocol']}, average over tIoUs), mean±std over seeds"]
    for name, entry in primary["per_class"].items():
        lines.append(f"{name:<24} {_pm(entry['average']):>12}")
    return "\n".join(lines)


__all__ = ["SUMMARY_FORMAT", "combined_interval", "describe", "format_summary", "summarize_epoch_selection",
           "summarize_seeds"]
