"""What a new user meets first: shipped configs that need data say which --set to add, the dependency
range keeps a researcher's torch, the README's outputs inside the checkout are git-ignored."""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib

import pytest
from conftest import REPO

from tadkit.cli import main
from tadkit.engine.config import load_config, packaged_configs

REAL_DATASET_CONFIGS = [name for name in packaged_configs()
                        if re.search(r"/(thumos14|anet1[23])", name) and "synthetic" not in name]


def test_real_dataset_configs_leave_data_paths_unset_with_a_placeholder():
    assert len(REAL_DATASET_CONFIGS) >= 12
    for name in REAL_DATASET_CONFIGS:
        config = load_config(name)
        assert config.data.annotations is None, name
        assert (config.data.features is None) and (config.data.frames is None), name
        text = (REPO / "tadkit" / "configs" / f"{name}.yaml").read_text()
        if "_base_" not in text:  # a derived config inherits its base's paths and comments
            assert re.search(r"--set data\.annotations=<(THUMOS14|ANET1[23])_ANNOTATIONS>", text), name


@pytest.mark.parametrize("command", ["train", "test"])
def test_a_config_without_data_paths_says_which_set_to_add(command, tmp_path, capsys):
    extra = ["--checkpoint", str(tmp_path / "none.pt")] if command == "test" else []
    code = main([command, "a2net/thumos14", *extra, "--out", str(tmp_path / "out"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    if command == "train":  # test stops earlier, at the missing checkpoint
        assert "field data.annotations" in err and "add --set data.annotations=PATH" in err, err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_a_missing_data_path_names_it_and_the_set_to_add(tmp_path, capsys):
    gt = tmp_path / "gt.json"
    gt.write_text('{"version": "x", "database": {"v": {"subset": "validation", "duration": 10.0, "fps": 30.0,'
                  ' "annotations": [{"segment": [1.0, 2.0], "label": "Diving"}]}}}')
    missing = tmp_path / "no_features"
    code = main(["train", "a2net/thumos14", "--set", f"data.annotations={gt}", f"data.features={missing}",
                 "--out", str(tmp_path / "out"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and f"feature directory {missing} does not exist" in err and "--set data.features=PATH" in err, err


def test_torch_is_a_range_not_a_pin():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    [torch_req] = [d for d in project["dependencies"] if re.match(r"torch\b", d)]
    assert "==" not in torch_req and re.fullmatch(r"torch>=2\.\d+,<3", torch_req.replace(" ", "")), torch_req
    import torch

    from packaging.specifiers import SpecifierSet

    tested = torch.__version__.split("+")[0]
    assert tested in SpecifierSet(torch_req.removeprefix("torch")), tested
    readme = (REPO / "README.md").read_text()
    assert f"torch=={tested}" in readme and "CI tests" in readme  # the version CI runs is named


# what the README and docs commands write inside the checkout
README_OUTPUTS = ["demo_out/report.txt", "data/synth_demo/annotations.json", "runs/a2net/last.pt",
                  "features/my_video.npy", "thumos14.json", "my_video.json", "my_video.png", "tadkit_demo/x"]


def _git(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True)


def test_readme_outputs_are_git_ignored_and_no_tracked_file_is():
    if shutil.which("git") is None or _git("rev-parse", "--git-dir").returncode != 0:
        pytest.skip("not a git checkout (an installed copy has no .gitignore to check)")
    checked = _git("check-ignore", "--no-index", "-v", *README_OUTPUTS)
    ignored = {line.split("\t")[-1] for line in checked.stdout.splitlines()}
    assert ignored == set(README_OUTPUTS), f"not ignored: {sorted(set(README_OUTPUTS) - ignored)}"
    # the package's own data/ and a test's runs are sources, not outputs
    for tracked in ("tadkit/data/annotations.py", "tadkit/configs/a2net/thumos14.yaml", "tests/test_first_hour.py"):
        assert _git("check-ignore", "--no-index", "-q", tracked).returncode == 1, tracked
    assert _git("ls-files", "-ci", "--exclude-standard").stdout == ""  # no tracked file is ignored


def test_one_opencv_wheel_in_every_install():
    """Every OpenCV wheel installs the same cv2 package: tadkit names only the contrib build (TV-L1)."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert not [d for d in project["dependencies"] if d.lower().startswith("opencv")]  # RGB needs no OpenCV
    named = {re.split(r"[<>=!~ \[]", d)[0].lower() for deps in project["optional-dependencies"].values()
             for d in deps if d.lower().startswith("opencv")}
    assert named == {"opencv-contrib-python-headless"}
    assert {"test", "flow"} <= {extra for extra, deps in project["optional-dependencies"].items()
                                if any(d.startswith("opencv-contrib-python-headless") for d in deps)}


def test_ci_installs_the_flow_extra_and_the_i3d_weights_then_runs_the_readme_test_command():
    ci = (REPO / ".ci" / "run").read_text()
    readme = (REPO / "README.md").read_text()
    [readme_test] = [line for line in readme.splitlines() if "python -m pytest" in line and line.startswith("pip ")]
    assert readme_test.replace("pip install ", "pip install -q ") in ci.splitlines()[-1]  # the README's command, last
    assert '-e ".[test,flow]"' in ci and "\ntadkit weights i3d\n" in ci
    assert "pip uninstall -q -y" in ci and "DualTVL1OpticalFlow_create" in ci  # one cv2, and it has TV-L1
    subprocess.run(["bash", "-n", str(REPO / ".ci" / "run")], check=True)


def test_without_opencv_flow_is_one_clear_error(monkeypatch):
    import sys

    from tadkit.errors import TadkitError
    from tadkit.video.flow import make_tvl1, tvl1_available

    monkeypatch.setitem(sys.modules, "cv2", None)  # `import cv2` raises ImportError
    assert tvl1_available() is False
    with pytest.raises(TadkitError, match=r"tadkit\[flow\].*no cv2 module"):
        make_tvl1()


def test_links_between_the_pages_resolve():
    pages = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
    broken = [f"{page.name} -> {target}" for page in pages
              for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text(encoding="utf-8"))
              if not target.startswith(("http://", "https://")) and not (page.parent / target).exists()]
    assert not broken, broken
