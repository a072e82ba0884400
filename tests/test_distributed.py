"""Two CPU processes (gloo) on RecBole's distributed path: training, checkpoints, exact
evaluation, equal weights on both ranks, resume, baselines, and errors as one line."""

import os

import pytest
import torch
from conftest import free_ports

from recbole_mixrec import distributed
from recbole_mixrec.cli import main as cli_main
from recbole_mixrec.errors import MixRecError
from recbole_mixrec.quick_start import build_trainer, load_data_and_model, run_mixrec


def launch(model, config_dict, nproc=2, resume_file=None):
    settings = distributed.launch_settings(nproc, -1, "127.0.0.1", free_ports()[0], 0)
    return distributed.spawn(run_mixrec, nproc, (model, "ml-100k", None, {**config_dict, **settings}),
                             {"resume_file": resume_file})


@pytest.fixture(scope="module")
def two_process_run(tiny_config_dict, tmp_path_factory):
    config_dict = {**tiny_config_dict, "checkpoint_dir": str(tmp_path_factory.mktemp("dist")),
                   "train_batch_size": 32}
    return config_dict, launch("MixRec", config_dict)


def evaluate_in_one_process(model_file):
    config, model, _, _, _, test_data = load_data_and_model(model_file)
    assert config["single_spec"] and config["local_rank"] == 0  # saved as one process would
    trainer = build_trainer(config, model)
    return trainer.evaluate(test_data, load_best_model=False)


def test_two_processes_train_and_keep_equal_weights(two_process_run):
    _, result = two_process_run
    digests = result["rank_weight_digests"]
    assert len(digests) == 2 and digests[0] == digests[1]
    assert os.path.isfile(result["saved_model_file"])
    assert os.path.isfile(result["saved_model_file"].replace(".pth", "-last.pth"))
    assert [point["epoch"] for point in result["learning_curve"]] == [0]


def test_two_process_evaluation_equals_one_process(two_process_run):
    _, result = two_process_run
    single = evaluate_in_one_process(result["saved_model_file"])
    assert set(single) == set(result["test_result"])
    for metric, value in single.items():
        assert result["test_result"][metric] == pytest.approx(value, abs=1e-4), metric


def test_checkpoint_holds_no_frozen_weights(two_process_run):
    _, result = two_process_run
    state = torch.load(result["saved_model_file"], map_location="cpu", weights_only=True)["state_dict"]
    _, model, *_ = load_data_and_model(result["saved_model_file"])
    frozen = {name for name, param in model.named_parameters() if not param.requires_grad}
    trainable = {name for name, param in model.named_parameters() if param.requires_grad}
    assert frozen and not frozen & set(state)
    assert trainable <= set(state)


def test_resume_with_two_processes_continues_after_the_last_epoch(two_process_run):
    config_dict, result = two_process_run
    resumed = launch("MixRec", {**config_dict, "epochs": 2},
                     resume_file=result["saved_model_file"].replace(".pth", "-last.pth"))
    assert [point["epoch"] for point in resumed["learning_curve"]] == [0, 1]  # epoch 0 not trained again
    assert resumed["rank_weight_digests"][0] == resumed["rank_weight_digests"][1]


BASELINE = {"epochs": 1, "show_progress": False, "MAX_ITEM_LIST_LENGTH": 20, "train_batch_size": 512,
            "eval_batch_size": 512}
# 5-star ratings only (~21k interactions): RecBole's every-prefix samples stay few
FIVE_STARS = {"val_interval": {"rating": "[5,5]"}}
OTHER_MODELS = {
    "SASRec": BASELINE,
    "GRU4Rec": BASELINE,
    "BERT4Rec": {**BASELINE, **FIVE_STARS},
    "FDSA": {**BASELINE, **FIVE_STARS},
    "Hydra": {**BASELINE, **FIVE_STARS, "hidden_size": 32, "n_layers": 1, "n_heads": 2, "head_size": 8,
              "d_state": 4, "expand": 1},
}


@pytest.mark.parametrize("model", sorted(OTHER_MODELS))
def test_baselines_and_hydra_run_in_two_processes(model, tmp_path):
    result = launch(model, {**OTHER_MODELS[model], "checkpoint_dir": str(tmp_path)})
    assert result["rank_weight_digests"][0] == result["rank_weight_digests"][1]
    single = evaluate_in_one_process(result["saved_model_file"])
    for metric, value in single.items():
        assert result["test_result"][metric] == pytest.approx(value, abs=1e-4), metric


@pytest.mark.parametrize("model, extra", [
    ("LLMRec", {}), ("MixRec_base", {}),
    ("LiteLLM4Rec", {"MAX_ITEM_LIST_LENGTH": 20, "max_seq_items": 20, "sequence_layers": 1,
                     "sequence_hidden_size": 32, "item_encode_batch_size": 256}),
])
def test_llm_models_run_in_two_processes(model, extra, tiny_config_dict, tmp_path):
    result = launch(model, {**tiny_config_dict, **extra, "checkpoint_dir": str(tmp_path), "train_batch_size": 32})
    assert result["rank_weight_digests"][0] == result["rank_weight_digests"][1]
    assert os.path.isfile(result["saved_model_file"])


def test_a_rank_error_is_one_line(tiny_config_dict):
    with pytest.raises(MixRecError, match=r"rank \d: dist_backend: nccl needs a run on GPUs") if not torch.cuda.is_available() \
            else pytest.raises(MixRecError):
        launch("MixRec", {**tiny_config_dict, "dist_backend": "nccl"})


@pytest.mark.parametrize("argv, message", [
    (["--nproc=0"], "--nproc=0: expected an integer >= 1"),
    (["--nproc=2", "--world_size=1"], "--world_size=1 is smaller than --nproc=2"),
    (["--nproc=2", "--group_offset=1"], "--group_offset=1: expected 0..0"),
    (["--nproc=2", "--dist_backend=mpi"], "dist_backend"),
    (["--nproc=2", "--model=Pop"], "Pop has nothing to train in parallel"),
    (["--nproc=2", "--save_dataloaders=True"], "save_dataloaders cannot be used with several processes"),
])
def test_bad_launch_settings_are_refused_before_any_process(argv, message, capsys):
    assert cli_main(["--model=MixRec", "--dataset=ml-100k", "--backbone=tiny-random", *argv]) == 2  # last --model wins
    assert message in capsys.readouterr().err


def sum_ranks_then(port, when_to_abort, local_rank):
    """A two-rank gloo job: rank 1 aborts (SIGABRT) during its work or at interpreter exit."""
    import atexit
    import torch.distributed as dist

    dist.init_process_group("gloo", rank=local_rank, world_size=2, init_method=f"tcp://127.0.0.1:{port}")
    total = torch.tensor([local_rank + 1.0])
    dist.all_reduce(total)
    if local_rank == 1 and when_to_abort == "at exit":
        atexit.register(os.abort)  # as gloo's threads sometimes do in torch's teardown
    if local_rank == 1 and when_to_abort == "while working":
        os.abort()
    return float(total)


def test_a_rank_dying_after_every_rank_finished_keeps_the_result(caplog):
    assert distributed.spawn(sum_ranks_then, 2, (free_ports()[0], "at exit")) == 3.0
    assert "every rank finished, then process 1 terminated with signal SIGABRT" in caplog.text


def test_a_rank_dying_before_it_finished_fails_the_run():
    with pytest.raises(MixRecError, match="process 1 terminated with signal SIGABRT"):
        distributed.spawn(sum_ranks_then, 2, (free_ports()[0], "while working"))
