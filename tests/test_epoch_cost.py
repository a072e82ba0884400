"""benchmarks.epoch_cost: each variant's overrides reach the run it builds, and the projection is
steps x median step time."""
import os
import re

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

import recbole_mixrec  # noqa: E402,F401  registers MixRec
from benchmarks import epoch_cost  # noqa: E402

LINE = re.compile(r"^(?P<name>\S+): (?P<step>[\d.]+) s/step .* (?P<steps>\d+) steps/epoch -> (?P<epoch>[\d.]+) min/epoch")


def test_variants_parse_and_bad_ones_are_refused():
    args = epoch_cost.parse_args(["--variants", "plain:", "long:max_seq_items=8,train_samples=windows", "--epochs=2"])
    assert args.variants == [("plain", {}), ("long", {"max_seq_items": "8", "train_samples": "windows"})]
    assert args.config_dict == {"epochs": "2"}
    with pytest.raises(SystemExit):
        epoch_cost.parse_args(["--variants", "no-colon"])


def test_each_variant_builds_its_own_loaders(tiny_config_dict, capsys):
    entries = [f"--{key}={value}" for key, value in tiny_config_dict.items()]
    # one sample per user against every window of 2 items: many more steps per epoch
    windows = "windows:train_samples=windows,max_seq_items=2,train_max_windows=None"  # every window
    assert epoch_cost.main(["--variants", "last:train_samples=last", windows,
                            "--steps", "2", "--eval_batches", "1", *entries]) == 0
    rows = {m["name"]: m for m in map(LINE.match, capsys.readouterr().out.splitlines()) if m}
    assert set(rows) == {"last", "windows"}
    n_users = 943  # ml-100k: one training sample per user with train_samples: last
    assert int(rows["last"]["steps"]) == -(-n_users // tiny_config_dict["train_batch_size"])
    assert int(rows["windows"]["steps"]) > 5 * int(rows["last"]["steps"])
    for row in rows.values():
        projected = float(row["step"]) * int(row["steps"]) / 60
        # printed: the step to 3 decimals, the epoch to 1
        assert float(row["epoch"]) == pytest.approx(projected, abs=0.05 + 0.0005 * int(row["steps"]) / 60 + 0.01)


def test_weights_start_from_a_trained_model_and_process_wide_settings_are_not_variants(
        tiny_config_dict, small_sasrec_run, tmp_path):
    from recbole_mixrec.errors import MixRecError
    from recbole_mixrec.quick_start import run_mixrec

    trained = run_mixrec("MixRec", "ml-100k", config_dict=dict(tiny_config_dict, checkpoint_dir=str(tmp_path)))
    entries = [f"--{key}={value}" for key, value in tiny_config_dict.items()]
    args = epoch_cost.parse_args(["--weights", trained["saved_model_file"], "--variants", "trained:", *entries])
    saved = torch.load(trained["saved_model_file"], weights_only=True)["state_dict"]
    state = epoch_cost.Variant(args, "trained", {}).model.state_dict()
    assert state.keys() == saved.keys()
    assert all(torch.equal(state[k], saved[k]) for k in saved)  # the trained weights, not a fresh start

    args.weights = small_sasrec_run["saved_model_file"]  # another model's checkpoint: one clear line
    with pytest.raises(MixRecError, match="does not fit variant 'trained'"):
        epoch_cost.Variant(args, "trained", {})
    # the OpenMP threads keep the denormal mode they started with: one setting per process
    with pytest.raises(SystemExit):
        epoch_cost.parse_args(["--variants", "flush:", "denormal:cpu_flush_denormal=False"])
