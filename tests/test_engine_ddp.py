"""DDP on CPU (gloo, torchrun, 2 processes) equals one process on the same global batch."""

from __future__ import annotations

import json
import re
import sys

import pytest
import torch
import yaml

from test_engine_resume import SUPPORT, finish, start
from test_engine_support import toy_config_dict

EVAL_WINDOWS = 7  # odd: DistributedSampler pads one rank with a repeated window


@pytest.mark.slow
def test_two_gloo_processes_match_one_process_and_gather_each_video_once(tmp_path):
    data = toy_config_dict(epochs=2, batch_size=8, eval_every=1, log_every=2)  # global batch 8 = 2 x 4
    config = tmp_path / "toy.yaml"
    config.write_text(yaml.safe_dump(data))
    single, double = tmp_path / "single", tmp_path / "ddp"
    args = ["train", str(config), "--num-windows", "32", "--eval-windows", str(EVAL_WINDOWS)]
    one_proc = start([sys.executable, str(SUPPORT), args[0], args[1], str(single), *args[2:]])
    two_procs = start([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                       str(SUPPORT), args[0], args[1], str(double), *args[2:]])
    finish(one_proc)
    # the two ranks share one stdout: their lines can interleave, so read the records, not the lines
    ranks = [json.loads(record) for record in re.findall(r'\{"rank": \d+, "process_group_threads": \[[^]]*\]\}',
                                                        finish(two_procs))]
    # the process group was destroyed when train() returned, not left to interpreter shutdown
    assert sorted(r["rank"] for r in ranks) == [0, 1] and all(r["process_group_threads"] == [] for r in ranks)

    one = json.loads((single / "history.json").read_text())["epochs"]
    two = json.loads((double / "history.json").read_text())["epochs"]
    assert [h["global_step"] for h in two] == [h["global_step"] for h in one] == [4, 8]  # 32 / 8 per epoch
    for a, b in zip(one, two):
        for term in ("cls", "reg", "total"):
            assert b["loss"][term] == pytest.approx(a["loss"][term], rel=1e-5)
        assert b["metrics"]["mean_top_score"] == pytest.approx(a["metrics"]["mean_top_score"], rel=1e-5)
    p1 = torch.load(single / "last.pt", weights_only=True)
    p2 = torch.load(double / "last.pt", weights_only=True)
    for key, value in p1["model"].items():
        torch.testing.assert_close(p2["model"][key], value, rtol=1e-5, atol=1e-6)
    assert p2["rng"]["world_size"] == 2 and len(p2["rng"]["per_rank"]) == 2  # both ranks' RNG states saved
    assert not torch.equal(p2["rng"]["per_rank"][0]["torch"], p2["rng"]["per_rank"][1]["torch"])  # seeded per rank

    for epoch in (1, 2):
        gathered = json.loads((double / f"predictions_epoch{epoch}.json").read_text())
        reference = json.loads((single / f"predictions_epoch{epoch}.json").read_text())
        assert gathered["world_size"] == 2 and reference["world_size"] == 1
        preds = gathered["predictions"]
        assert [p["index"] for p in preds] == list(range(EVAL_WINDOWS))  # each window once, in order
        videos = [p["video_id"] for p in preds]
        assert len(videos) == len(set(videos)) == EVAL_WINDOWS  # each video exactly once
        assert videos == [p["video_id"] for p in reference["predictions"]]
        for mine, theirs in zip(preds, reference["predictions"]):
            assert mine["scores"] == pytest.approx(theirs["scores"], rel=1e-4, abs=1e-6)
