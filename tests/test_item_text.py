"""Item sentences, the tokenised item store and its cache (spec section 1)."""

import os

import pytest

from recbole_mixrec.data.item_text import ItemTextError
from recbole_mixrec.data.item_tokens import ItemTokenStore
from recbole_mixrec.errors import MixRecError
from recbole_mixrec.quick_start import build_config, load_dataset
from tests.conftest import write_atomic


def _item(dataset, token):
    return int(dataset.token2id(dataset.iid_field, token))


def test_ml100k_sentence_is_key_value_pairs_in_field_order(ml100k_dataset):
    toy_story = _item(ml100k_dataset, "1")
    assert ml100k_dataset.item_sentences[toy_story] == (
        "movie title Toy Story release year 1995 class Animation Children's Comedy"
    )
    assert ml100k_dataset.item_sentences[0] == ""  # padding item
    assert len(ml100k_dataset.item_sentences) == ml100k_dataset.item_num == 1683


def test_item_tokens_match_the_tokenizer_and_the_cap(ml100k_dataset, ml100k_config):
    from recbole_mixrec.backbone import load_tokenizer

    store = ml100k_dataset.item_tokens
    tokenizer = load_tokenizer("tiny-random", ml100k_config["backbone_cache_dir"])
    cap = ml100k_config["item_text_max_tokens"]
    for item in (1, 50, 1682):
        expected = tokenizer(ml100k_dataset.item_sentences[item], add_special_tokens=False)["input_ids"][:cap]
        assert store.token_ids[item, : store.lengths[item]].tolist() == expected
        assert store.token_ids[item, store.lengths[item]:].eq(0).all()
    assert store.lengths[0] == 0
    assert int(store.lengths.max()) <= cap


def test_token_cache_key_changes_with_text_tokenizer_and_cap():
    base = ItemTokenStore.cache_key(["a b", "c"], ["tok", 10], 30)
    assert base == ItemTokenStore.cache_key(["a b", "c"], ["tok", 10], 30)
    assert base != ItemTokenStore.cache_key(["a b", "c d"], ["tok", 10], 30)
    assert base != ItemTokenStore.cache_key(["a b", "c"], ["other", 10], 30)
    assert base != ItemTokenStore.cache_key(["a b", "c"], ["tok", 10], 20)


def test_token_cache_is_written_once_and_reused(ml100k_dataset, ml100k_config, tmp_path):
    from recbole_mixrec.backbone import load_tokenizer

    tokenizer = load_tokenizer("tiny-random", ml100k_config["backbone_cache_dir"])
    sentences = ml100k_dataset.item_sentences[:20]
    first = ItemTokenStore.cached(sentences, tokenizer, ["t"], 30, str(tmp_path))
    files = os.listdir(tmp_path)
    assert len(files) == 1
    os.utime(tmp_path / files[0], (1, 1))
    second = ItemTokenStore.cached(sentences, tokenizer, ["t"], 30, str(tmp_path))
    assert os.listdir(tmp_path) == files and os.path.getmtime(tmp_path / files[0]) == 1  # read, not rewritten
    assert second.token_ids.equal(first.token_ids)
    ItemTokenStore.cached(sentences, tokenizer, ["t"], 12, str(tmp_path))  # other cap: new entry
    assert len(os.listdir(tmp_path)) == 2


def _tiny_dataset_config(tmp_path, tiny_config_dict, **overrides):
    inter = [(u, i, t) for u in (1, 2, 3) for t, i in enumerate((10, 11, 12, 13))]
    items = [(10, "Red Pen", "Acme"), (11, "", ""), (12, "Blue Ink", ""), (13, "Paper", "Acme")]
    write_atomic(str(tmp_path), "tiny", inter, items)
    config_dict = dict(
        tiny_config_dict,
        data_path=str(tmp_path),
        load_col={"inter": ["user_id", "item_id", "timestamp"], "item": ["item_id", "title", "brand"]},
        item_text_fields=["title", "brand"],
    )
    config_dict.update(overrides)
    return build_config("MixRec", "tiny", config_dict=config_dict)


def test_item_without_text_gets_key_names_and_is_counted(tmp_path, tiny_config_dict, caplog):
    dataset = load_dataset(_tiny_dataset_config(tmp_path, tiny_config_dict))
    assert dataset.item_sentences[_item(dataset, "11")] == "title brand"
    assert dataset.item_sentences[_item(dataset, "12")] == "title Blue Ink"
    assert dataset.item_sentences[_item(dataset, "10")] == "title Red Pen brand Acme"
    assert "items without text: 1 of 4" in caplog.text


def test_item_without_text_can_be_an_error(tmp_path, tiny_config_dict):
    config = _tiny_dataset_config(tmp_path, tiny_config_dict, item_text_missing="error")
    with pytest.raises(ItemTextError, match=r"1 item\(s\) have no text .*'11'"):
        load_dataset(config)


def test_unknown_item_text_missing_value_is_a_clear_error(tmp_path, tiny_config_dict):
    # refused while the config is built (config_checks reads MixRec.yaml's "Range in [...]")
    with pytest.raises(MixRecError, match=r"item_text_missing='skip' .*expected one of \['keep', 'error'\]"):
        _tiny_dataset_config(tmp_path, tiny_config_dict, item_text_missing="skip")


def test_unknown_text_field_is_a_clear_error(tmp_path, tiny_config_dict):
    config = _tiny_dataset_config(tmp_path, tiny_config_dict, item_text_fields=["title", "colour"])
    with pytest.raises(ItemTextError, match=r"unknown item field\(s\) \['colour'\].*brand"):
        load_dataset(config)


def test_unknown_load_col_field_and_malformed_header_are_clear_errors(tmp_path, tiny_config_dict):
    config = _tiny_dataset_config(tmp_path, tiny_config_dict)
    config["load_col"] = {"inter": ["user_id", "item_id", "timestamp"], "item": ["item_id", "colour"]}
    with pytest.raises(MixRecError, match=r"load_col: unknown field\(s\) \['colour'\]"):
        load_dataset(config)
    with open(tmp_path / "tiny" / "tiny.item", "r+") as handle:
        rows = handle.read().splitlines()
        handle.seek(0)
        handle.write("\n".join(["item_id:token\ttitle\tbrand:token_seq"] + rows[1:]) + "\n")
    config["load_col"] = {"inter": ["user_id", "item_id", "timestamp"], "item": ["item_id", "title"]}
    with pytest.raises(MixRecError, match=r"tiny.item line 1: column 'title' is not 'name:type'"):
        load_dataset(config)
