"""Which epoch is reported: last, best on the held-out validation split, or best on the test set.

Reads a run's ``history.json`` (the trainer's per-evaluation metrics: test ``average_mAP`` /
``mAP@t`` and, with ``data.val_fraction``, the same names prefixed ``val_``). The official ECM,
ACRNet, A2Net and AFSD codes report the best epoch *on the test set*; that choice uses the test
labels, so its score is optimistic. The difference "best on test - best on validation" (both
scored on the test set) measures that optimism; "best on test - last" what the test-set choice
adds over simply taking the last epoch. Selecting on test stays available, labelled as such.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

VAL_PREFIX = "val_"
METRIC = "average_mAP"


def _split(metrics: Mapping[str, float]) -> tuple[dict[str, float], dict[str, float]]:
    test = {k: float(v) for k, v in metrics.items() if not k.startswith(VAL_PREFIX)}
    val = {k[len(VAL_PREFIX):]: float(v) for k, v in metrics.items() if k.startswith(VAL_PREFIX)}
    return test, val


def epoch_selection(history: Mapping[str, Any], metric: str = METRIC) -> dict[str, Any] | None:
    """Last / best-on-validation / best-on-test evaluation of a history; None when nothing was evaluated.

    Ties go to the earliest evaluation. Values are fractions, scored on the test set unless under ``val``.
    """
    records = [r for r in history.get("epochs", []) if isinstance(r.get("metrics"), dict) and metric in r["metrics"]]
    if not records:
        return None
    unit = "step" if history.get("unit") == "iteration" else "epoch"

    def entry(record: Mapping[str, Any], how: str) -> dict[str, Any]:
        test, val = _split(record["metrics"])
        return {"selected_by": how, unit: int(record.get(unit, record.get("epoch", 0))), "test": test, "val": val}

    def best(key: str) -> Mapping[str, Any]:
        return max(enumerate(records), key=lambda item: (item[1]["metrics"][key], -item[0]))[1]

    out: dict[str, Any] = {"metric": metric, "unit": unit, "evaluations": len(records),
                           "last": entry(records[-1], "last evaluation")}
    has_val = all(VAL_PREFIX + metric in r["metrics"] for r in records)
    if has_val:
        out["best_on_val"] = entry(best(VAL_PREFIX + metric), "best on the held-out validation split")
    out["best_on_test"] = entry(best(metric), "best on the TEST set (optimistic; the official codes' choice)")
    out["best_on_test_minus_last"] = out["best_on_test"]["test"][metric] - out["last"]["test"][metric]
    if has_val:
        out["optimism"] = out["best_on_test"]["test"][metric] - out["best_on_val"]["test"][metric]
    return out


def read_epoch_selection(history_path: str | Path, metric: str = METRIC) -> dict[str, Any] | None:
    """:func:`epoch_selection` of a ``history.json``; None when there is none (or it has no evaluation).

    A history that exists but is malformed is one TadkitError naming the file.
    """
    from tadkit.errors import TadkitError

    path = Path(history_path)
    if not path.is_file():
        return None
    try:
        history = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(history, list):  # the older history.json: a bare list of records
            history = {"epochs": history}
        if not isinstance(history, dict) or not isinstance(history.get("epochs", []), list):
            raise ValueError("expected an object with a list 'epochs'")
        return epoch_selection(history, metric)
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as error:
        raise TadkitError(f"unreadable training history: {error}", file=str(path), field="epochs") from None


def format_epoch_selection(selection: Mapping[str, Any]) -> str:
    metric, unit = selection["metric"], selection["unit"]
    lines = [f"epoch selection ({metric} %, from the run's {selection['evaluations']} evaluation(s) in history.json)",
             f"{'choice':<60} {unit:>6} {'test':>8} {'val':>8}"]
    for key in ("last", "best_on_val", "best_on_test"):
        if key in selection:
            e = selection[key]
            val = e["val"].get(metric)
            lines.append(f"{e['selected_by']:<60} {e[unit]:>6} {100 * e['test'][metric]:>8.2f} "
                         f"{'-' if val is None else format(100 * val, '.2f'):>8}")
    if "optimism" in selection:
        lines.append(f"optimism of selecting on test (best on test - best on validation, test scores): "
                     f"{100 * selection['optimism']:+.2f} points")
    else:
        lines.append("no held-out validation split (set data.val_fraction): only last and best-on-test exist")
    lines.append(f"best on test - last: {100 * selection['best_on_test_minus_last']:+.2f} points")
    return "\n".join(lines)


__all__ = ["epoch_selection", "format_epoch_selection", "read_epoch_selection"]
