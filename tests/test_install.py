"""A real, non-editable install: the wheel carries every yaml default, and the installed
console script trains from a directory outside the repository."""

import glob
import os
import subprocess
import sys
import zipfile

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """``pip install --no-deps --target`` of a wheel built from the repository (dependencies:
    this environment's; build with this environment's setuptools, no download)."""
    wheels = tmp_path_factory.mktemp("wheels")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
         "-w", str(wheels), REPO], check=True,
    )
    (wheel,) = glob.glob(str(wheels / "recbole_mixrec-*.whl"))
    target = tmp_path_factory.mktemp("site")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target), wheel],
        check=True,
    )
    return wheel, target


def test_the_wheel_carries_every_yaml_of_properties(installed):
    wheel, _ = installed
    names = set(zipfile.ZipFile(wheel).namelist())
    repo_files = {
        os.path.relpath(path, REPO).replace(os.sep, "/")
        for path in glob.glob(os.path.join(REPO, "properties", "**", "*.yaml"), recursive=True)
    }
    assert len(repo_files) > 20
    assert {f"recbole_mixrec/{name}" for name in repo_files} <= names


def test_installed_console_script_trains_from_another_directory(installed, tmp_path, cache_dir):
    _, target = installed
    env = {**os.environ, "PYTHONPATH": str(target), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    where = subprocess.run(
        [sys.executable, "-c", "import recbole_mixrec.properties as p; print(p.PROPERTIES_DIR)"],
        cwd=tmp_path, env=env, capture_output=True, text=True, check=True,
    ).stdout.strip()
    assert where == os.path.join(str(target), "recbole_mixrec", "properties")
    script = os.path.join(str(target), "bin", "recbole-mixrec")
    run = subprocess.run(
        [script, "--model=MixRec_base", "--dataset=ml-100k", "--backbone=tiny-random", "--epochs=1",
         "--max_seq_items=3", "--train_batch_size=128", "--eval_batch_size=512", "--show_progress=False",
         f"--backbone_cache_dir={cache_dir}", f"--checkpoint_dir={tmp_path / 'saved'}"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert "MixRec_base on ml-100k: test" in run.stdout
    # the plugin's model yaml was read (its lambda_cf 0.0 and cf_model none, not MixRec's)
    log = open(glob.glob(str(tmp_path / "log" / "MixRec_base" / "*.log"))[0]).read()
    assert "cf_model = none" in log


def test_a_missing_default_file_is_a_clear_error(monkeypatch, tmp_path):
    from recbole_mixrec import properties

    monkeypatch.setattr(properties, "PROPERTIES_DIR", str(tmp_path))
    with pytest.raises(properties.MissingPropertiesError, match="overall.yaml is missing"):
        properties.config_files("MixRec", "ml-100k")
    (tmp_path / "overall.yaml").write_text("seed: 1\n")
    with pytest.raises(properties.MissingPropertiesError, match="MixRec.yaml is missing"):
        properties.config_files("MixRec", "ml-100k")
    assert properties.config_files("SASRec", "my-data") == [str(tmp_path / "overall.yaml")]
