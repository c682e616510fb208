"""One config, several training seeds: ``tadkit train CONFIG --seeds 0,1,2 --out DIR``.

Each seed trains into ``DIR/seed_<s>/`` (the usual run directory, with ``train.seed = s``);
``DIR/seeds.json`` records the config, the overrides and the seeds so that ``tadkit test DIR``
finds them. Seeds run one after another in this process by default; ``--parallel N`` runs N at
once as separate ``tadkit train`` processes (console output in ``DIR/logs/seed_<s>.log``), each
given the next entry of ``--devices`` (``cpu``, or a CUDA device index exported to that process
alone as ``CUDA_VISIBLE_DEVICES``). ``--resume`` skips finished seeds and continues the others
from their ``last.pt``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from tadkit.errors import TadkitError

if TYPE_CHECKING:
    from tadkit.engine.config import Config

SEEDS_MANIFEST = "seeds.json"
SEEDS_FORMAT = "tadkit-seeds/1"


def parse_seeds(text: str) -> list[int]:
    """``"0,1,2"`` -> [0, 1, 2]: distinct non-negative integers."""
    try:
        seeds = [int(part) for part in str(text).split(",") if part.strip()]
    except ValueError:
        raise TadkitError(f"expected comma-separated integers like 0,1,2, got {text!r}", field="--seeds") from None
    if not seeds or any(s < 0 for s in seeds) or len(set(seeds)) != len(seeds):
        raise TadkitError(f"expected distinct non-negative integers, got {text!r}", field="--seeds")
    return seeds


def parse_devices(text: str | None) -> list[str]:
    """``"0,1"`` / ``"cpu"`` -> device entries (CUDA indices or ``cpu``)."""
    if not text:
        return []
    devices = [part.strip() for part in text.split(",") if part.strip()]
    for device in devices:
        if device != "cpu" and not device.isdigit():
            raise TadkitError(f"each device is 'cpu' or a CUDA index (0, 1, ...), got {device!r}", field="--devices")
    return devices


def seed_dir(out_dir: Path, seed: int) -> Path:
    return Path(out_dir) / f"seed_{seed}"


def read_manifest(directory: Path) -> dict[str, Any]:
    """``DIR/seeds.json`` (written by ``tadkit train --seeds``): seeds and where each run lives."""
    path = Path(directory) / SEEDS_MANIFEST
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TadkitError("not a multi-seed run directory (no seeds.json)", file=str(directory), field="seeds") from None
    except (OSError, ValueError) as error:
        raise TadkitError(f"unreadable: {error}", file=str(path), field="seeds") from None
    if not isinstance(data, dict) or data.get("format") != SEEDS_FORMAT:
        raise TadkitError(f"not a {SEEDS_FORMAT} file", file=str(path), field="format")
    seeds = data.get("seeds")
    if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0
                                                           for s in seeds) or len(set(seeds)) != len(seeds):
        raise TadkitError("expected a list of distinct non-negative integer seeds", file=str(path), field="seeds")
    return data


def run_finished(run_dir: Path, config: "Config") -> bool:
    """Whether ``run_dir``'s history reaches the config's last epoch (or iteration)."""
    try:
        history = json.loads((Path(run_dir) / "history.json").read_text(encoding="utf-8"))
        last = history["epochs"][-1]
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        return False
    if config.train.iterations:
        return int(last.get("step", last.get("global_step", 0))) >= int(config.train.iterations)
    return int(last.get("epoch", 0)) >= int(config.train.epochs)


@dataclass
class SeedPlan:
    seed: int
    out_dir: Path
    resume: bool
    device: str | None


def plan_seeds(seeds: list[int], out_dir: Path, config: "Config", resume: bool, devices: list[str]) -> list[SeedPlan]:
    """What each seed needs: skip (finished, with --resume), continue, or start; refuse to overwrite."""
    plans = []
    for i, seed in enumerate(seeds):
        directory = seed_dir(out_dir, seed)
        if (directory / "last.pt").exists() and not resume:
            raise TadkitError(f"seed {seed} already holds a training run; pass --resume to continue the unfinished "
                              "seeds or choose another --out", file=str(directory), field="out_dir")
        if resume and run_finished(directory, config):
            continue
        plans.append(SeedPlan(seed, directory, resume, devices[i % len(devices)] if devices else None))
    return plans


def write_manifest(out_dir: Path, args: argparse.Namespace, seeds: list[int]) -> None:
    from tadkit.utils.io import write_json

    path = out_dir / SEEDS_MANIFEST
    config, overrides = str(Path(args.config).absolute()), list(args.overrides)
    known: list[int] = []
    if path.exists():
        manifest = read_manifest(out_dir)
        if (manifest.get("config"), manifest.get("overrides")) != (config, overrides):
            raise TadkitError(f"holds seeds of {manifest.get('config')} with --set {manifest.get('overrides')}; "
                              f"this command has {config} with --set {overrides}: one directory, one configuration "
                              "(choose another --out)", file=str(path), field="config")
        known = [s for s in manifest["seeds"] if s not in seeds]  # --resume may add seeds
    write_json(path, {"format": SEEDS_FORMAT, "config": config, "overrides": overrides, "seeds": known + seeds})


def _child_command(args: argparse.Namespace, plan: SeedPlan) -> tuple[list[str], dict[str, str]]:
    command = [sys.executable, "-m", "tadkit.cli", "train", str(args.config), "--out", str(plan.out_dir),
               "--no-progress"]
    for override in args.overrides:
        command += ["--set", override]
    command += ["--set", f"train.seed={plan.seed}"]
    for module in getattr(args, "method_module", None) or []:  # the user's plug-ins, as on their command line
        command += ["--method-module", module]
    env = dict(os.environ)
    if plan.device == "cpu":
        command += ["--set", "train.device=cpu"]
    elif plan.device is not None:
        env["CUDA_VISIBLE_DEVICES"] = plan.device
    if plan.resume:
        command.append("--resume")
    return command, env


def run_seeds(args: argparse.Namespace, make_evaluate_fn: Callable[..., Any] | None = None) -> int:
    """``tadkit train CONFIG --seeds ...``: every seed's run, then one line per seed."""
    from tadkit.engine.config import load_config
    from tadkit.engine.run import resolve_out_dir

    seeds = parse_seeds(args.seeds)
    devices = parse_devices(args.devices)
    parallel = int(args.parallel or 1)
    if parallel < 1:
        raise TadkitError(f"must be >= 1, got {parallel}", field="--parallel")
    base = load_config(args.config, args.overrides)
    out_dir = resolve_out_dir(base, args.out, args.config)
    plans = plan_seeds(seeds, out_dir, base, args.resume, devices)
    write_manifest(out_dir, args, seeds)  # creates out_dir
    skipped = sorted(set(seeds) - {p.seed for p in plans})
    if skipped:
        print(f"seeds {skipped} already finished in {out_dir}")
    if parallel == 1:
        failures = _run_in_process(args, plans, make_evaluate_fn)
    else:
        failures = _run_processes(args, plans, parallel, out_dir)
    for plan in plans:
        status = failures.get(plan.seed, "done")
        print(f"seed {plan.seed}: {status} -> {plan.out_dir}")
    if failures:
        raise TadkitError(f"seed(s) {sorted(failures)} failed; rerun with --resume to continue them",
                          file=str(out_dir), field="--seeds")
    print(f"{len(seeds)} seed(s) trained in {out_dir}; test them all with `tadkit test {out_dir} --out OUT`")
    return 0


def _run_in_process(args: argparse.Namespace, plans: list[SeedPlan],
                    make_evaluate_fn: Callable[..., Any] | None) -> dict[int, str]:
    from tadkit.engine.config import load_config
    from tadkit.engine.trainer import train

    for plan in plans:
        overrides = list(args.overrides) + [f"train.seed={plan.seed}"]
        if plan.device == "cpu":
            overrides.append("train.device=cpu")
        config = load_config(args.config, overrides)
        config.out_dir = str(plan.out_dir)
        evaluate_fn = make_evaluate_fn(config, plan.out_dir) if make_evaluate_fn is not None else None
        print(f"seed {plan.seed}: training into {plan.out_dir}", flush=True)
        train(config, plan.out_dir, plan.resume, None, evaluate_fn, progress=not args.no_progress)
    return {}


def _run_processes(args: argparse.Namespace, plans: list[SeedPlan], parallel: int, out_dir: Path) -> dict[int, str]:
    logs = out_dir / "logs"
    logs.mkdir(exist_ok=True)

    def run_one(plan: SeedPlan) -> tuple[int, int]:
        command, env = _child_command(args, plan)
        with open(logs / f"seed_{plan.seed}.log", "w", encoding="utf-8") as log:
            return plan.seed, subprocess.run(command, env=env, stdout=log, stderr=subprocess.STDOUT).returncode

    with ThreadPoolExecutor(max_workers=parallel) as pool:
        codes = dict(pool.map(run_one, plans))
    return {seed: f"failed (exit {code}; see {logs / f'seed_{seed}.log'})" for seed, code in codes.items() if code}


__all__ = ["SEEDS_MANIFEST", "parse_seeds", "parse_devices", "plan_seeds", "read_manifest", "run_finished",
           "run_seeds", "seed_dir"]
