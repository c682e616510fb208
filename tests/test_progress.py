"""tadkit.utils.progress: a tqdm bar on a terminal, plain periodic lines in a log file."""

from __future__ import annotations

import io

import pytest

from tadkit.utils.progress import PlainProgress, progress, progress_style


class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_style_follows_the_stream_and_the_environment(monkeypatch):
    monkeypatch.delenv("TADKIT_PROGRESS", raising=False)
    assert progress_style(FakeTTY()) == "bar"
    assert progress_style(io.StringIO()) == "plain"
    assert progress_style(FakeTTY(), disable=True) == "off"
    monkeypatch.setenv("TADKIT_PROGRESS", "plain")
    assert progress_style(FakeTTY()) == "plain"
    monkeypatch.setenv("TADKIT_PROGRESS", "off")
    assert progress_style(io.StringIO()) == "off"


def test_log_file_gets_one_line_per_ten_percent_and_no_carriage_returns(monkeypatch):
    monkeypatch.delenv("TADKIT_PROGRESS", raising=False)
    log = io.StringIO()
    seen = list(progress(range(200), desc="extract", unit="video", file=log, quiet_s=0))
    assert seen == list(range(200))
    text = log.getvalue()
    assert "\r" not in text
    lines = text.splitlines()
    assert len(lines) == 10  # 10 %, 20 %, ..., 90 % and the final "done" line
    assert lines[0].startswith("extract: 10% (20/200 video)")
    assert lines[8].startswith("extract: 90% (180/200 video)")
    assert lines[-1].startswith("extract: done, 200 video in ")


def test_terminal_gets_a_tqdm_bar(monkeypatch):
    monkeypatch.delenv("TADKIT_PROGRESS", raising=False)
    from tqdm import tqdm

    tty = FakeTTY()
    bar = progress(range(5), desc="x", file=tty)
    assert isinstance(bar, tqdm)
    assert list(bar) == list(range(5))
    assert "\r" in tty.getvalue() and "5/5" in tty.getvalue()


def test_time_based_lines_without_a_total_and_tqdm_calls():
    clock, log = Clock(), io.StringIO()
    bar = PlainProgress(total=None, desc="download", unit="B", unit_scale=True, file=log, clock=clock,
                        min_interval_s=30.0)
    for _ in range(10):
        clock.now += 10.0
        bar.update(2_500_000)
    bar.set_postfix(loss="0.25")
    bar.close()
    bar.close()  # idempotent
    lines = log.getvalue().splitlines()
    assert lines == ["download: 7.5 MB after 30.0 s", "download: 15.0 MB after 60.0 s",
                     "download: 22.5 MB after 90.0 s", "download: done, 25.0 MB in 100.0 s [loss=0.25]"]


def test_interrupted_loop_says_where_it_stopped():
    clock, log = Clock(), io.StringIO()
    with pytest.raises(RuntimeError):
        for i in PlainProgress(range(50), desc="train", unit="batch", file=log, clock=clock, percent_step=50):
            clock.now += 1.0
            if i == 30:
                raise RuntimeError("boom")
    lines = log.getvalue().splitlines()
    assert lines[0].startswith("train: 50% (25/50 batch) 25.0 s elapsed, ~25 s left")
    assert lines[-1] == "train: stopped at 30 batch of 50 after 31.0 s"


def test_disabled_is_silent_but_iterates(capsys):
    bar = progress(range(3), disable=True)
    assert list(bar) == [0, 1, 2]
    bar.set_postfix(x=1)
    bar.update(2)
    bar.close()
    assert capsys.readouterr() == ("", "")


def test_a_quick_loop_prints_nothing_and_a_slow_one_reports_after_the_quiet_period():
    clock, log = Clock(), io.StringIO()
    for _ in PlainProgress(range(10), desc="quick", file=log, clock=clock, quiet_s=2.0):
        clock.now += 0.1  # 1 s in all
    assert log.getvalue() == ""
    for _ in PlainProgress(range(10), desc="slow", file=log, clock=clock, quiet_s=2.0):
        clock.now += 0.5  # the 10 %..30 % marks fall inside the first 2 s
    lines = log.getvalue().splitlines()
    assert lines[0].startswith("slow: 40%") and lines[-1].startswith("slow: done, 10 it in 5.0 s")
