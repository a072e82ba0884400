"""Shared fixtures: offline HuggingFace, a private model cache, small real RecBole datasets."""

import os
import socket

os.environ["HF_HUB_OFFLINE"] = "1"  # nothing in the tests may reach a hub

import pytest  # noqa: E402

import recbole_mixrec  # noqa: E402,F401  registers the plugin with RecBole
from recbole_mixrec.quick_start import build_config, load_dataset, run_mixrec  # noqa: E402


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("mixrec-cache")
    os.environ["RECBOLE_MIXREC_CACHE"] = str(path)  # also seen by Ray workers started later
    return str(path)


@pytest.fixture(scope="session")
def tiny_config_dict(cache_dir, tmp_path_factory):
    """A MixRec config that trains in seconds: random 2-layer backbone, short histories."""
    return {
        "backbone": "tiny-random",
        "backbone_cache_dir": cache_dir,
        "epochs": 1,
        "max_seq_items": 4,
        # one sample per user, every L_cl anchor: what these tests were written for (the CPU
        # demo's defaults, two windows and 4 anchors, have tests of their own)
        "train_samples": "last",
        "cl_batch_size": None,
        "train_batch_size": 64,
        "eval_batch_size": 256,
        "show_progress": False,
        "checkpoint_dir": str(tmp_path_factory.mktemp("checkpoints")),
    }


@pytest.fixture(scope="session")
def ml100k_config(tiny_config_dict):
    return build_config("MixRec", "ml-100k", config_dict=tiny_config_dict)


@pytest.fixture(scope="session")
def ml100k_dataset(ml100k_config):
    return load_dataset(ml100k_config)


@pytest.fixture(scope="session")
def ml100k_splits(ml100k_config, ml100k_dataset):
    """RecBole's train/valid/test loaders. Built once: ``build()`` converts the dataset's
    features in place and cannot run twice on the same dataset object."""
    from recbole.data import data_preparation

    return data_preparation(ml100k_config, ml100k_dataset)


def write_atomic(folder, name, inter_rows, item_rows, item_header="item_id:token\ttitle:token_seq\tbrand:token_seq"):
    """Write a tiny RecBole atomic dataset ``folder/name/name.{inter,item}``."""
    path = os.path.join(folder, name)
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, f"{name}.inter"), "w") as handle:
        handle.write("user_id:token\titem_id:token\ttimestamp:float\n")
        handle.writelines("\t".join(map(str, row)) + "\n" for row in inter_rows)
    with open(os.path.join(path, f"{name}.item"), "w") as handle:
        handle.write(item_header + "\n")
        handle.writelines("\t".join(map(str, row)) + "\n" for row in item_rows)
    return folder


def free_ports(count=1):
    """``count`` ports free on 127.0.0.1 now (all held open together, so they differ)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


@pytest.fixture(scope="session")
def small_sasrec_run(tmp_path_factory):
    """A real SASRec trained for one epoch on ml-100k in seconds (what ``run_mixrec`` returns):
    a checkpoint for the tools that read any model's checkpoint. Read it, never write to it."""
    small = {"epochs": 1, "MAX_ITEM_LIST_LENGTH": 10, "show_progress": False, "hidden_size": 16,
             "n_layers": 1, "train_batch_size": 4096, "eval_batch_size": 4096,
             "checkpoint_dir": str(tmp_path_factory.mktemp("small_sasrec"))}
    return run_mixrec("SASRec", "ml-100k", config_dict=small)
