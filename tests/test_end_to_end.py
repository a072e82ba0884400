"""End to end through RecBole's own entry points: training, evaluation, checkpoints, CLI, Ray."""

import math
import os
import subprocess
import sys

import pytest
import torch

from recbole_mixrec.cli import main
from recbole_mixrec.quick_start import isolated_argv, run_mixrec

METRICS = {"mrr@10", "recall@10", "ndcg@10"}


@pytest.fixture(scope="module")
def trained(tiny_config_dict):
    return run_mixrec("MixRec", "ml-100k", config_dict=tiny_config_dict)


def _check_metrics(result):
    assert set(result) == METRICS
    assert all(0.0 <= v <= 1.0 and math.isfinite(v) for v in result.values())


def test_one_epoch_trains_and_evaluates_with_full_ranking(trained):
    _check_metrics(trained["test_result"])
    _check_metrics(trained["best_valid_result"])
    assert trained["best_valid_score"] == trained["best_valid_result"]["mrr@10"]
    # 1,682 candidates: a random ranking has MRR@10 about 0.002; one epoch already beats it
    assert trained["test_result"]["recall@10"] > 10 / 1682


def test_checkpoint_loads_weights_only_and_reproduces_the_test_result(trained):
    from recbole.quick_start import load_data_and_model

    path = trained["saved_model_file"]
    checkpoint = torch.load(path, weights_only=True)  # torch >= 2.6 default, no env override
    assert "llm.embed_tokens.weight" not in checkpoint["state_dict"]  # frozen backbone left out
    assert any(".adapter." in k for k in checkpoint["state_dict"])
    assert os.path.getsize(path) < 20e6
    with isolated_argv():
        config, model, _, _, _, test_data = load_data_and_model(path)  # RecBole's own loader
    assert type(model).__name__ == "MixRec"
    for key, value in checkpoint["state_dict"].items():
        assert torch.equal(model.state_dict()[key], value), key
    from recbole_mixrec.trainer import MixRecTrainer

    result = MixRecTrainer(config, model).evaluate(test_data, load_best_model=False)
    assert dict(result) == pytest.approx(dict(trained["test_result"]), abs=1e-4)


def test_the_same_run_twice_gives_the_same_numbers(tiny_config_dict, tmp_path):
    # the first run mines the hard negatives and builds the backbone, the second reads both
    # from the cache: what a researcher repeating a command does
    config = dict(tiny_config_dict, backbone_cache_dir=str(tmp_path), checkpoint_dir=str(tmp_path / "saved"))
    mined = run_mixrec("MixRec", "ml-100k", config_dict=config)  # empty cache: mines, then caches
    assert os.listdir(tmp_path / "hard_negatives" / "ml-100k")
    cached = run_mixrec("MixRec", "ml-100k", config_dict=config)
    assert dict(cached["test_result"]) == dict(mined["test_result"])
    assert cached["best_valid_score"] == mined["best_valid_score"]


def test_run_recbole_finds_mixrec_by_name(tiny_config_dict):
    from recbole.quick_start import run_recbole

    with isolated_argv():
        result = run_recbole(model="MixRec", dataset="ml-100k", config_dict=tiny_config_dict)
    _check_metrics(result["test_result"])


def test_cli_runs_a_recbole_baseline_and_resumes_it(capsys, tmp_path):
    args = [
        "--model=GRU4Rec", "--dataset=ml-100k", "--epochs=1", "--show_progress=False",
        "--MAX_ITEM_LIST_LENGTH=5", "--embedding_size=16", "--hidden_size=16",
        "--train_batch_size=4096", "--eval_batch_size=4096", f"--checkpoint_dir={tmp_path}",
    ]
    code = main(args)
    out = capsys.readouterr().out
    assert code == 0
    (line,) = [l for l in out.splitlines() if l.startswith("GRU4Rec on ml-100k: test mrr@10:")]
    assert "ndcg@10:" in line
    # --resume_file: the run was "cut off" after its last validation; nothing is left to
    # train, so the resumed run tests the same best weights
    (last,) = [f for f in os.listdir(tmp_path) if f.endswith("-last.pth")]
    assert main(args + [f"--resume_file={tmp_path / last}"]) == 0
    assert line in capsys.readouterr().out.splitlines()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--model=NoSuchRec", "--dataset=ml-100k"], "unknown model 'NoSuchRec': plugin models ['Hydra', 'LLMRec', 'LiteLLM4Rec', 'MixRec'"),
        (["--model=MixRec", "--dataset=no-such-data"], "dataset 'no-such-data' not found"),
        (["--model=MixRec", "--dataset=amazon-pantry", "--data_path=/nonexistent"],
         "create it with: python -m dataset_tools amazon2018 --reviews <download_dir>/Prime_Pantry_5.json.gz "
         "--meta <download_dir>/meta_Prime_Pantry.json.gz --name amazon-pantry --out /nonexistent"),
        (["--model=GRU4Rec", "--resume_file=/nonexistent/GRU4Rec-last.pth"],
         "checkpoint not found: /nonexistent/GRU4Rec-last.pth"),
    ],
)
def test_cli_bad_input_is_one_clear_line(args, message, capsys):
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err and err.count("\n") == 1


def _atomic_inter(folder, header, rows):
    os.makedirs(folder)
    with open(os.path.join(folder, "ds.inter"), "w") as handle:
        handle.write("\n".join(["\t".join(header)] + ["\t".join(row) for row in rows]) + "\n")


@pytest.mark.parametrize(
    "case, message",
    [
        ("missing config file", "config file not found: nope.yaml"),
        ("text in a float column", "ds.inter line 6: time field 'timestamp' is 'abc', not a number"),
        ("no time under TO", "TIME_FIELD (eval_args order: TO)=timestamp not among the loaded fields"),
        ("--scan_impl=fast", "scan_impl='fast' (command line / config_dict): expected one of ['chunked', 'reference']"),
        ("--scan_chunk=0", "scan_chunk=0 (command line / config_dict): expected an integer in [1, inf)"),
    ],
)
def test_cli_bad_files_and_settings_are_one_clear_line(case, message, tmp_path, capsys):
    rows = [(str(u), str(i), str(u * 10 + i)) for u in range(1, 4) for i in range(1, 6)]
    args = ["--model=SASRec", "--dataset=ds", f"--data_path={tmp_path}", "--show_progress=False",
            f"--checkpoint_dir={tmp_path}"]
    if case == "missing config file":
        args += ["--config_files=nope.yaml"]
    elif case == "text in a float column":
        rows[4] = ("1", "5", "abc")
        args += ["--load_col={'inter': ['user_id', 'item_id', 'timestamp']}"]
        _atomic_inter(tmp_path / "ds", ["user_id:token", "item_id:token", "timestamp:float"], rows)
    elif case == "no time under TO":
        _atomic_inter(tmp_path / "ds", ["user_id:token", "item_id:token"], [r[:2] for r in rows])
    else:
        args = ["--model=Hydra", "--dataset=ml-100k", case, "--show_progress=False"]  # a model setting
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err and err.count("\n") == 1


def test_a_ray_worker_that_imports_the_plugin_resolves_it_by_name(cache_dir):
    ray = pytest.importorskip("ray")

    @ray.remote
    def resolve():
        import recbole_mixrec  # noqa: F401
        from recbole.utils import get_model, get_trainer
        from recbole.utils.enum_type import ModelType

        return get_model("MixRec").__name__, get_trainer(ModelType.SEQUENTIAL, "MixRec").__name__

    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
    try:
        assert ray.get(resolve.remote()) == ("MixRec", "MixRecTrainer")
    finally:
        ray.shutdown()


@pytest.mark.slow
@pytest.mark.parametrize(
    "model, extra",
    [
        ("LLMRec", {}),
        ("MixRec_base", {}),
        ("MixRec_noBO", {}),
        ("MixRec_causal2", {}),
        ("MixRec", {"cf_model": "MF", "architecture": "ppsspp"}),
        ("MixRec", {"cf_model": "NCF", "cf_trainable": False, "cf_pretrain_epochs": 1}),
    ],
)
def test_every_variant_trains_one_epoch_with_finite_metrics(model, extra, tiny_config_dict):
    result = run_mixrec(model, "ml-100k", config_dict={**tiny_config_dict, **extra})
    _check_metrics(result["test_result"])


def test_importing_the_plugin_leaves_autograd_anomaly_detection_off():
    # RecBole's model package switches it on at import (sine.py); the plugin switches it back
    from recbole.utils import get_model

    get_model("SASRec")
    assert not torch.is_anomaly_enabled()


@pytest.mark.slow
def test_cli_search_bo_then_trains_with_the_best_architecture(tiny_config_dict, tmp_path, capsys):
    entries = dict(
        tiny_config_dict, max_seq_items=3, lambda_cl=0.0, bo_iterations=2, bo_initial_points=2,
        bo_parallel_trials=2, bo_subset_ratio=0.05, bo_num_cpus=2, bo_search_dir=str(tmp_path / "search"),
    )
    code = main(["--model=MixRec", "--dataset=ml-100k", "--search=bo"] + [f"--{k}={v}" for k, v in entries.items()])
    out = capsys.readouterr().out
    assert code == 0, out
    best = out.split("best architecture ")[1].split(":")[0]
    assert len(best) == 6 and set(best) <= {"s", "p"}  # 2 tiny layers x 3 choices
    import yaml

    saved = yaml.safe_load((tmp_path / "search" / "best_architecture.yaml").read_text())
    assert saved == {"architecture": best}
    assert "MixRec on ml-100k: test mrr@10:" in out


def test_two_runs_in_one_process_each_write_their_own_log(tmp_path):
    """RecBole's init_logger only configures logging once per process; every run gets its log."""
    script = (
        "from recbole_mixrec.quick_start import run_mixrec\n"
        "quick = dict(epochs=1, MAX_ITEM_LIST_LENGTH=5, embedding_size=16, hidden_size=16, "
        "user_inter_num_interval='[0,40]', show_progress=False, train_batch_size=4096)\n"
        "for model in ('GRU4Rec', 'SASRec'):\n"
        "    run_mixrec(model, 'ml-100k', config_dict=quick, saved=False)\n"
    )
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=os.getcwd())
    subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, check=True,
                   capture_output=True, timeout=300)
    for model in ("GRU4Rec", "SASRec"):
        (log_file,) = (tmp_path / "log" / model).iterdir()
        text = log_file.read_text()
        assert f"model = {model}" in text or f"{model}(" in text
        assert "epoch 0 training" in text and "test result" in text


def test_fdsa_checkpoint_loads_weights_only(tmp_path):
    """FDSA lists a module in other_parameter; its checkpoint must still load weights-only
    (RecBole's test evaluation reloads it)."""
    quick = dict(epochs=1, MAX_ITEM_LIST_LENGTH=5, embedding_size=16, hidden_size=16,
                 user_inter_num_interval="[0,40]", show_progress=False, train_batch_size=4096,
                 checkpoint_dir=str(tmp_path))
    with isolated_argv():
        result = run_mixrec("FDSA", "ml-100k", config_dict=quick)
    assert all(math.isfinite(result["test_result"][m]) for m in METRICS)
    checkpoint = torch.load(result["saved_model_file"], weights_only=True)
    assert checkpoint["other_parameter"] == {} and "feature_embed_layer" not in checkpoint["other_parameter"]


def test_untrained_validation_is_recorded_and_leaves_training_unchanged(tiny_config_dict, trained):
    """valid_untrained validates the model after its start from the data, before any step: it
    is epoch -1 of the curve, and the run trains exactly as the one without it (the same module
    fixture, 1 epoch): the extra pass draws no random number of the run's streams."""
    result = run_mixrec("MixRec", "ml-100k", config_dict={**tiny_config_dict, "valid_untrained": True}, saved=False)
    untrained = result["untrained_valid_result"]
    _check_metrics(untrained)
    first = result["learning_curve"][0]
    assert first["epoch"] == -1 and first["train_loss"] is None
    assert first["valid_score"] == untrained["mrr@10"]
    assert [p["epoch"] for p in result["learning_curve"]] == [-1, 0]
    assert result["learning_curve"][1] == trained["learning_curve"][0]
    assert result["test_result"] == trained["test_result"]
    assert trained["untrained_valid_result"] is None
