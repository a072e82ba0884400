"""Published pre-split data (UniSRec / VQ-Rec / MISSRec format): ``dataset_tools unisrec`` and
runs on exactly the published split (issue 16, item 4)."""

import os
import random

import pytest

from dataset_tools import DatasetToolError, unisrec
from dataset_tools.cli import main

PREFIX = "Tiny"


def make_sequences(n_users=30, n_items=20, seed=0, shortest=4):
    """Chronological item-index lists; lengths 4..14 (user 0: ``shortest``), one repeated item."""
    rng = random.Random(seed)
    sequences = {}
    for user in range(n_users):
        length = shortest if user == 0 else rng.randint(4, 14)
        sequences[str(user)] = [str(rng.randrange(n_items)) for _ in range(length)]
    sequences["1"][4:6] = ["7", "7"]
    return sequences


def write_published(folder, sequences, cap=5, n_items=20, drop_text=()):
    """The published layout: every training prefix as a row (latest target first), valid and
    test rows with histories cut to their last ``cap`` items, .text keyed by product id."""
    os.makedirs(folder, exist_ok=True)
    header = "user_id:token\titem_id_list:token_seq\titem_id:token\n"
    files = {split: open(os.path.join(folder, f"{PREFIX}.{split}.inter"), "w") for split in unisrec.SPLITS}
    for handle in files.values():
        handle.write(header)
    for user, seq in sequences.items():
        train = seq[:-2]
        for back in range(1, len(train)):
            files["train"].write(f"{user}\t{' '.join(train[:-back][-cap:])}\t{train[-back]}\n")
        files["valid"].write(f"{user}\t{' '.join(train[-cap:])}\t{seq[-2]}\n")
        files["test"].write(f"{user}\t{' '.join(seq[:-1][-cap:])}\t{seq[-1]}\n")
    for handle in files.values():
        handle.close()
    with open(os.path.join(folder, f"{PREFIX}.item2index"), "w") as handle:
        handle.writelines(f"B{index:05d}X\t{index}\n" for index in range(n_items))
    with open(os.path.join(folder, f"{PREFIX}.user2index"), "w") as handle:
        handle.writelines(f"A{user}U\t{user}\n" for user in sequences)
    with open(os.path.join(folder, f"{PREFIX}.text"), "w") as handle:
        handle.write("item_id:token\ttext:token_seq\n")
        handle.writelines(f"B{index:05d}X\tWidget {index}. Lab Supplies. Acme. \n"
                          for index in range(n_items + 3) if index not in drop_text)
    return folder


def published_rows(folder):
    return {split: unisrec.read_split(os.path.join(folder, f"{PREFIX}.{split}.inter")) for split in unisrec.SPLITS}


def test_rebuilds_the_sequences(tmp_path, caplog):
    sequences = make_sequences(shortest=3)  # user 0: no training row
    folder = write_published(str(tmp_path / "pub"), sequences, drop_text=(3,))
    caplog.set_level("INFO", logger="dataset_tools")
    assert main(["unisrec", "--input", folder, "--name", "tiny-pub", "--out", str(tmp_path / "out")]) == 0
    out = tmp_path / "out" / "tiny-pub"
    lines = (out / "tiny-pub.inter").read_text().splitlines()
    assert lines[0] == "user_id:token\titem_id:token\trating:float\ttimestamp:float"
    rebuilt = {}
    for line in lines[1:]:
        user, item, _, position = line.split("\t")
        rebuilt.setdefault(user, []).append((float(position), item))
    assert {u: [i for _, i in sorted(v)] for u, v in rebuilt.items()} == sequences
    items = (out / "tiny-pub.item").read_text().splitlines()
    assert items[0] == "item_id:token\ttext:token_seq"
    assert "7\tWidget 7. Lab Supplies. Acme." in items  # index -> product id -> text, cleaned
    assert "MAX_ITEM_LIST_LENGTH: 5 " in (out / "tiny-pub.yaml").read_text()
    assert "ignored 3 text records of items not in the split" in caplog.text
    assert "1 interacted items have no text record" in caplog.text
    assert "1 users have 3 interactions" in caplog.text


@pytest.mark.parametrize("edit, message", [
    (lambda f: _drop_line(f, "test", 3), "test.inter: 1 users have no row"),
    (lambda f: _drop_line(f, "train", 2), "train.inter: user 0 has no row but a valid history of 2 items"),
    (lambda f: _drop_line(f, "train", 3), "valid.inter: user 1's history is not the preceding items"),
    (lambda f: _replace(f, "train", 4, lambda v: ["19"] + v[1:], column=1), "train.inter: user 1: 3 rows are not on one"),
    (lambda f: _replace(f, "valid", 2, lambda v: v[:-1] + [str((int(v[-1]) + 1) % 20)], column=1),
     "valid.inter: user 1's history is not the preceding items"),
    (lambda f: _write(f, "valid", "user_id:token\titem_id:token\n"), "valid.inter line 1: header lacks ['item_id_list']"),
    (lambda f: _write(f, "text", "item_id:token\ttext:token_seq\nzzz\tnothing\n"), "Tiny.text: no key matches"),
])
def test_not_a_published_split_is_a_one_line_error(tmp_path, capsys, edit, message):
    folder = write_published(str(tmp_path / "pub"), make_sequences())
    edit(folder)
    assert main(["unisrec", "--input", folder, "--name", "x", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err


def _path(folder, split):
    return os.path.join(folder, f"{PREFIX}.{split}" + (".inter" if split in unisrec.SPLITS else ""))


def _drop_line(folder, split, number):
    with open(_path(folder, split)) as handle:
        lines = handle.readlines()
    del lines[number - 1]
    _write(folder, split, "".join(lines))


def _replace(folder, split, number, change, column):
    with open(_path(folder, split)) as handle:
        lines = handle.readlines()
    values = lines[number].rstrip("\n").split("\t")
    values[column] = " ".join(change(values[column].split()))
    lines[number] = "\t".join(values) + "\n"
    _write(folder, split, "".join(lines))


def _write(folder, split, text):
    with open(_path(folder, split), "w") as handle:
        handle.write(text)


def split_rows(dataset, loader):
    """(user, history, target) tokens of the rows a RecBole loader evaluates or trains on."""
    inter = loader._dataset.inter_feat
    users, items = dataset.field2id_token[dataset.uid_field], dataset.field2id_token[dataset.iid_field]
    rows = []
    for user, history, length, target in zip(inter[dataset.uid_field].tolist(), inter[dataset.item_id_list_field].tolist(),
                                             inter[dataset.item_list_length_field].tolist(), inter[dataset.iid_field].tolist()):
        rows.append((users[user], tuple(items[i] for i in history[:length]), items[target]))
    return rows


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    root = tmp_path_factory.mktemp("presplit")
    folder = write_published(str(root / "pub"), make_sequences())
    assert main(["unisrec", "--input", folder, "--name", "tiny-pub", "--out", str(root / "data")]) == 0
    return str(root / "data"), published_rows(folder)


@pytest.mark.parametrize("model", ["SASRec", "MixRec"])
def test_recbole_split_is_the_published_one(converted, tiny_config_dict, model):
    from recbole.data import data_preparation

    from recbole_mixrec.quick_start import build_config, load_dataset

    data_path, published = converted
    settings = dict(tiny_config_dict, data_path=data_path, train_samples="all", lambda_cl=0)
    config = build_config(model, "tiny-pub", config_dict=settings)
    assert config["MAX_ITEM_LIST_LENGTH"] == 5 and list(config["item_text_fields"]) == ["text"]
    dataset = load_dataset(config)
    train, valid, test = data_preparation(config, dataset)
    assert sorted(split_rows(dataset, valid)) == sorted(published["valid"])
    assert sorted(split_rows(dataset, test)) == sorted(published["test"])
    assert sorted(split_rows(dataset, train)) == sorted(published["train"])
    if model == "MixRec":
        tokens = dataset.field2id_token[dataset.iid_field]
        assert dataset.item_sentences[list(tokens).index("7")] == "text Widget 7. Lab Supplies. Acme."


@pytest.mark.parametrize("model", ["SASRec", "MixRec"])
def test_runs_on_the_published_split(converted, tiny_config_dict, model):
    from recbole_mixrec import run_mixrec

    data_path, _ = converted
    result = run_mixrec(model, "tiny-pub", config_dict=dict(tiny_config_dict, data_path=data_path, epochs=2))
    assert set(result["test_result"]) == {"mrr@10", "recall@10", "ndcg@10"}


def test_benchmark_filename_points_to_the_converter(tmp_path, tiny_config_dict):
    from recbole_mixrec.errors import MixRecError
    from recbole_mixrec.quick_start import build_config, load_dataset

    write_published(str(tmp_path / PREFIX), make_sequences())
    for extra in ({}, {"benchmark_filename": ["train", "valid", "test"]}):
        config = build_config("SASRec", PREFIX, config_dict=dict(tiny_config_dict, data_path=str(tmp_path), **extra))
        with pytest.raises(MixRecError, match="python -m dataset_tools unisrec --input .* --name Tiny-loo"):
            load_dataset(config)
