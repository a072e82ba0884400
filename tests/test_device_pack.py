"""benchmarks/device/pack_results.py: what a device run sends back."""

import importlib.util
import json
import os
import tarfile

import pytest

SPEC = importlib.util.spec_from_file_location(
    "pack_results", os.path.join(os.path.dirname(__file__), "..", "benchmarks", "device", "pack_results.py"))
pack = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(pack)


def _model(root, dataset, run, model, status, sizes):
    run_dir = os.path.join(root, dataset, run)
    os.makedirs(os.path.join(run_dir, "models"), exist_ok=True)
    if status:
        with open(os.path.join(run_dir, "models", f"{model}.json"), "w") as handle:
            json.dump({"model": model, "status": status}, handle)
    folder = os.path.join(run_dir, "checkpoints", model)
    os.makedirs(folder)
    for name, size in sizes.items():
        with open(os.path.join(folder, name), "wb") as handle:
            handle.write(os.urandom(size))


@pytest.fixture
def run_root(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _model("results", "ml-100k", "quality", "LLMRec", "ok", {"L.pth": 10, "L-last.pth": 10})
    _model("results", "amazon-scientific", "quality", "MixRec", None, {"M.pth": 3000, "M-last.pth": 3000})
    _model("results", "amazon-scientific", "paper", "MixRec", "failed", {"P.pth": 2000})
    return tmp_path


def test_unfinished_checkpoints_best_first_in_priority_order(run_root):
    best, last = pack.unfinished_checkpoints("results")
    assert [os.path.basename(p) for p in best] == ["M.pth", "P.pth"]  # LLMRec finished: nothing
    assert [os.path.basename(p) for p in last] == ["M-last.pth"]


def test_parts_rejoin_to_the_chosen_checkpoints_within_budget(run_root, monkeypatch):
    monkeypatch.setattr(pack, "PART", 4000)  # tar pads to 10 KiB records: 3 parts
    monkeypatch.setattr(pack, "BUDGET", 5500)  # room for M.pth and P.pth, not M-last.pth
    pack.main("results", "out")
    parts = sorted(f for f in os.listdir("out") if f.startswith("ckpt.tar.part"))
    assert len(parts) > 1
    with open("joined.tar", "wb") as joined:
        for part in parts:
            with open(os.path.join("out", part), "rb") as handle:
                joined.write(handle.read())
    with tarfile.open("joined.tar") as tar:
        names = sorted(os.path.basename(n) for n in tar.getnames())
        original = open("results/amazon-scientific/quality/checkpoints/MixRec/M.pth", "rb").read()
        packed = tar.extractfile("results/amazon-scientific/quality/checkpoints/MixRec/M.pth").read()
    assert names == ["M.pth", "P.pth"]
    assert packed == original
    with tarfile.open("out/results.tgz") as tar:
        assert not [n for n in tar.getnames() if "/checkpoints" in n]
        assert "results/ml-100k/quality/models/LLMRec.json" in tar.getnames()
