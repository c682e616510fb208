"""One ``--set`` takes one or more KEY=VALUE pairs and may repeat, on every command that has it."""

from __future__ import annotations

import pytest

from tadkit.cli import build_parser, main

# (command line before --set, after it) for each command with --set
COMMANDS = {
    "train": (["train", "ecm/thumos14"], []),
    "test": (["test", "ecm/thumos14", "--checkpoint", "c.pt", "--out", "o"], []),
    "detect": (["detect", "video.mp4"], ["--out", "x.json"]),
    "convert": (["convert", "a2net-official", "in.pth", "out.pt"], []),
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_one_set_takes_several_pairs_and_repeats(command):
    head, tail = COMMANDS[command]
    parser = build_parser(only=command)
    args = parser.parse_args([*head, "--set", "a.b=1", "c=[2, 3]", "--set", "d=x", *tail])
    assert args.overrides == ["a.b=1", "c=[2, 3]", "d=x"]
    assert parser.parse_args(head).overrides == []


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_set_value_without_equals_is_a_usage_error_naming_it(command, capsys):
    head, _ = COMMANDS[command]
    with pytest.raises(SystemExit) as exit_info:
        build_parser(only=command).parse_args([*head, "--set", "a=1", "stray"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "'stray'" in err and "KEY=VALUE" in err and f"tadkit {command}" in err  # the command's own usage


def test_model_selection_as_the_configs_write_it():
    """configs/ecm/thumos14.yaml and docs write `--set train.eval_every=1 train.best_metric=mAP@0.5`."""
    from tadkit.engine.config import load_config

    args = build_parser(only="train").parse_args(
        ["train", "ecm/thumos14", "--set", "train.eval_every=1", "train.best_metric=mAP@0.5"])
    config = load_config(args.config, args.overrides)
    assert config.train.eval_every == 1 and config.train.best_metric == "mAP@0.5"


def test_bad_pair_through_main_is_one_error_line(capsys):
    assert main(["train", "ecm/thumos14", "--set", "train.lr=1e-4", "=3"]) == 2
    assert "--set expects KEY=VALUE" in capsys.readouterr().err
