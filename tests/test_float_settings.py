"""cpu_flush_denormal: a run sets the process's denormal mode from its config (default: flush)
before its first parallel op, so that the OpenMP threads inherit it too, and MixRec's late
epochs do not slow down on denormal gradients."""
import os
import subprocess
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

from recbole_mixrec.quick_start import apply_float_settings, build_config  # noqa: E402

DENORMAL = 1e-39  # below float32's smallest normal number, 1.18e-38
HAS_FTZ = torch.set_flush_denormal(True)  # the plugin's default; False where the CPU has no such mode
pytestmark = pytest.mark.skipif(not HAS_FTZ, reason="this CPU has no flush-to-zero mode")

# A fresh process with two torch threads: how many of 1M denormal products survive, after
# ``SETUP`` (the product runs in parallel, so every OpenMP thread's mode counts)
CHILD = """
import sys, torch
torch.set_num_threads(2)
{setup}
# 2**-129, a denormal, written as bits: a float literal would itself be flushed on the way in
y = torch.full((1_000_000,), 1 << 20, dtype=torch.int32).view(torch.float32) * 1.0
print(int((y != 0).sum()))
"""


def surviving_denormals(setup, cwd):
    out = subprocess.run([sys.executable, "-c", CHILD.format(setup=setup)], capture_output=True, text=True,
                         cwd=cwd, env=dict(os.environ, HF_HUB_OFFLINE="1"), timeout=600, check=True)
    return int(out.stdout.strip().splitlines()[-1])


def product():
    return (torch.tensor([DENORMAL]) * 1.0).item()


@pytest.fixture(autouse=True)
def restore_default():
    yield
    torch.set_flush_denormal(True)


def test_setting_flushes_or_keeps_denormals():
    apply_float_settings({"cpu_flush_denormal": False})
    assert product() == pytest.approx(DENORMAL)
    apply_float_settings({"cpu_flush_denormal": True})
    assert product() == 0.0
    assert (torch.tensor([2e-38]) * 1.0).item() == pytest.approx(2e-38)  # normal numbers unchanged


def test_a_run_flushes_on_every_thread_by_default(tmp_path):
    assert build_config("Pop", "ml-100k")["cpu_flush_denormal"] is True  # overall.yaml's default

    def run(**extra):
        config = dict(show_progress=False, checkpoint_dir=str(tmp_path), **extra)
        return f"from recbole_mixrec.quick_start import run_mixrec\nrun_mixrec('Pop', 'ml-100k', config_dict={config!r})"

    assert surviving_denormals(run(), tmp_path) == 0
    assert surviving_denormals(run(cpu_flush_denormal=False), tmp_path) == 1_000_000
    # why a run sets it first: set after the threads started, it reaches the calling thread only
    late = "torch.ones(1_000_000) * 1.0\ntorch.set_flush_denormal(True)"
    assert 0 < surviving_denormals(late, tmp_path) < 1_000_000
