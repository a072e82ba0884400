"""The shared disk-cache rule (recbole_mixrec.disk_cache) on real files: keys, loading, rebuilding
corrupt entries with a warning, atomic writes, unwritable folders; and through its callers."""

import hashlib
import json
import logging
import os
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from recbole_mixrec.data.hard_negatives import cached_hard_negatives, hard_negative_key, interaction_matrix
from recbole_mixrec.data.item_tokens import ItemTokenStore
from recbole_mixrec.disk_cache import cache_key, load_or_build
from recbole_mixrec.errors import MixRecError
from recbole_mixrec.model.litellm4rec import item_vector_key

VALUE = {"ids": torch.arange(6).view(2, 3), "lengths": torch.tensor([3, 1])}


def _same(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _builder(value=VALUE):
    calls = []

    def build():
        calls.append(1)
        return value

    return build, calls


def _never():
    raise AssertionError("build must not run")


def _truncated_torch_file(path):
    torch.save({"ids": torch.arange(10_000)}, path)
    with open(path, "rb") as handle:
        data = handle.read()
    with open(path, "wb") as handle:
        handle.write(data[: len(data) // 2])


# ----- keys ----------------------------------------------------------------------------------
def test_key_is_a_short_sha256_over_the_parts_in_order():
    expected = hashlib.sha256(b"ab" + np.arange(3).tobytes()).hexdigest()[:16]
    assert cache_key("a", b"b", torch.arange(3)) == expected
    assert cache_key("a", "b", np.arange(3)) == expected
    assert cache_key("a", "b", torch.arange(6).view(2, 3).t()[:, 0]) == expected  # strided view: its values
    assert cache_key("b", "a", np.arange(3)) != expected
    with pytest.raises(TypeError):
        cache_key(3)


def test_callers_keys_are_those_of_the_earlier_hand_written_hashes():
    # existing cache files must still be found: the formulas the callers used before
    sentences, tokenizer_id, cap = ["", "red pen", "blue ink é"], ["tiny-random", "x", 49152], 30
    digest = hashlib.sha256()
    digest.update(json.dumps([tokenizer_id, cap]).encode())
    for sentence in sentences:
        digest.update(sentence.encode())
        digest.update(b"\0")
    assert ItemTokenStore.cache_key(sentences, tokenizer_id, cap) == digest.hexdigest()[:16]

    users, items = torch.tensor([0, 0, 1, 2]), torch.tensor([1, 2, 2, 1])
    digest = hashlib.sha256()
    for part in ("all-minilm-l6-v2", 64, 0.05, sentences):
        digest.update(repr(part).encode())
    digest.update(users.numpy().tobytes())
    digest.update(items.numpy().tobytes())
    assert hard_negative_key("all-minilm-l6-v2", 64, 0.05, sentences, users, items) == digest.hexdigest()[:16]

    ids, lengths = torch.arange(12).view(3, 4), torch.tensor([0, 4, 2])
    digest = hashlib.sha256()
    digest.update(json.dumps(["tiny-random", 2, "last"]).encode())
    digest.update(str(tuple(ids.shape)).encode())
    digest.update(ids.cpu().contiguous().numpy().tobytes())
    digest.update(lengths.cpu().contiguous().numpy().tobytes())
    assert item_vector_key("tiny-random", 2, "last", ids, lengths) == digest.hexdigest()[:16]


# ----- load_or_build ---------------------------------------------------------------------------
def test_a_missing_entry_is_built_and_written_atomically(tmp_path):
    path = tmp_path / "deep" / "entry-abc.pt"  # the folder is created
    build, calls = _builder()
    value, loaded = load_or_build(str(path), build, "test values")
    assert not loaded and calls == [1] and _same(value, VALUE)
    assert os.listdir(path.parent) == ["entry-abc.pt"]  # no temporary file left
    assert _same(torch.load(path, weights_only=True), VALUE)


def test_a_valid_entry_is_loaded_without_building(tmp_path):
    path = tmp_path / "entry.pt"
    torch.save(VALUE, path)
    os.utime(path, (1, 1))
    value, loaded = load_or_build(str(path), _never, "test values", validate=lambda v: "ids" in v)
    assert loaded and _same(value, VALUE)
    assert os.path.getmtime(path) == 1 and os.listdir(tmp_path) == ["entry.pt"]  # read, not rewritten


@pytest.mark.parametrize("spoil", ["garbage", "truncated", "empty", "not_torch", "wrong_content"])
def test_a_bad_entry_is_rebuilt_with_a_warning(tmp_path, caplog, spoil):
    path = tmp_path / "entry.pt"
    if spoil == "garbage":
        path.write_bytes(os.urandom(300))
    elif spoil == "truncated":
        _truncated_torch_file(path)
    elif spoil == "empty":
        path.write_bytes(b"")
    elif spoil == "not_torch":
        path.write_text("token_ids,lengths\n1,2\n")
    else:  # a sound torch file, but not what the caller stores
        torch.save({"something": torch.zeros(2)}, path)
    build, calls = _builder()
    with caplog.at_level(logging.WARNING, logger="recbole_mixrec.disk_cache"):
        value, loaded = load_or_build(str(path), build, "test values", validate=lambda v: v["ids"].dim() == 2)
    assert not loaded and calls == [1] and _same(value, VALUE)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert str(path) in warnings[0].getMessage() and "rebuilding" in warnings[0].getMessage()
    assert "test values" in warnings[0].getMessage()
    # the rebuilt entry replaced the bad one and is read back next time
    assert os.listdir(tmp_path) == ["entry.pt"]
    again, loaded = load_or_build(str(path), _never, "test values", validate=lambda v: v["ids"].dim() == 2)
    assert loaded and _same(again, VALUE)


def test_a_folder_that_is_a_file_is_a_mixrec_error_naming_folder_and_setting(tmp_path):
    blocker = tmp_path / "cache"
    blocker.write_text("not a folder")
    for path in (blocker / "entry.pt", blocker / "sub" / "entry.pt"):
        with pytest.raises(MixRecError) as info:
            load_or_build(str(path), _never, "test values")  # fails before building
        message = str(info.value)
        assert str(path.parent) in message and "backbone_cache_dir" in message
        assert "RECBOLE_MIXREC_CACHE" in message and "\n" not in message
    assert blocker.read_text() == "not a folder"


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root writes everywhere")
def test_a_folder_without_write_permission_is_a_mixrec_error(tmp_path):
    folder = tmp_path / "readonly"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        with pytest.raises(MixRecError, match=str(folder)):
            load_or_build(str(folder / "entry.pt"), _never, "test values")
    finally:
        folder.chmod(0o700)


def test_a_failed_build_leaves_no_partial_file_and_good_entries_untouched(tmp_path):
    good = tmp_path / "entry-good.pt"
    torch.save(VALUE, good)
    good_bytes = good.read_bytes()

    def failing():
        raise RuntimeError("out of memory while building")

    with pytest.raises(RuntimeError, match="out of memory"):  # the build's own error, unchanged
        load_or_build(str(tmp_path / "entry-new.pt"), failing, "test values")
    assert os.listdir(tmp_path) == ["entry-good.pt"] and good.read_bytes() == good_bytes

    # an entry rejected by the caller is not touched by a rebuild that fails either
    with pytest.raises(RuntimeError, match="out of memory"):
        load_or_build(str(good), failing, "test values", validate=lambda v: False)
    assert os.listdir(tmp_path) == ["entry-good.pt"] and good.read_bytes() == good_bytes


def test_a_build_error_that_is_an_oserror_is_not_reported_as_an_unwritable_cache(tmp_path):
    def failing():
        raise FileNotFoundError("encoder folder missing")

    with pytest.raises(FileNotFoundError, match="encoder folder missing"):
        load_or_build(str(tmp_path / "entry.pt"), failing, "test values")
    assert os.listdir(tmp_path) == []


# ----- through the callers ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def tokenizer(cache_dir):
    from recbole_mixrec.backbone import load_tokenizer

    return load_tokenizer("tiny-random", cache_dir)


SENTENCES = ["", "movie title Toy Story class Comedy", "movie title Heat class Action Crime", "a"]


def test_a_corrupt_item_token_cache_is_rebuilt(tmp_path, tokenizer, caplog):
    first = ItemTokenStore.cached(SENTENCES, tokenizer, ["t"], 30, str(tmp_path))
    (name,) = os.listdir(tmp_path)
    assert name == f"item_tokens-{ItemTokenStore.cache_key(SENTENCES, ['t'], 30)}.pt"
    _truncated_torch_file(tmp_path / name)
    with caplog.at_level(logging.INFO):
        again = ItemTokenStore.cached(SENTENCES, tokenizer, ["t"], 30, str(tmp_path))
    assert f"item tokens cache file {tmp_path / name} cannot be read" in caplog.text
    assert "rebuilding it" in caplog.text and f"item tokens cached in {tmp_path / name}" in caplog.text
    assert torch.equal(again.token_ids, first.token_ids) and torch.equal(again.lengths, first.lengths)
    assert os.listdir(tmp_path) == [name]
    # a store for other items under the same name (shape mismatch) is rebuilt too
    torch.save({"token_ids": first.token_ids[:2], "lengths": first.lengths[:2]}, tmp_path / name)
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        third = ItemTokenStore.cached(SENTENCES, tokenizer, ["t"], 30, str(tmp_path))
    assert "holds unexpected content; rebuilding it" in caplog.text
    assert torch.equal(third.token_ids, first.token_ids)


def test_an_unwritable_item_token_cache_is_a_mixrec_error(tmp_path, tokenizer):
    blocker = tmp_path / "item_tokens"
    blocker.write_text("")
    with pytest.raises(MixRecError, match=f"item tokens cache in {blocker / 'ml-100k'}: .*backbone_cache_dir"):
        ItemTokenStore.cached(SENTENCES, tokenizer, ["t"], 30, str(blocker / "ml-100k"))


def test_a_corrupt_hard_negative_cache_is_mined_anew(tmp_path, caplog):
    sentences = ["", "red pen", "blue pen", "black pen", "jazz record", "rock record"]
    dataset = SimpleNamespace(item_sentences=sentences, user_num=3, item_num=len(sentences))
    users, items = torch.tensor([0, 0, 1, 1, 2, 2]), torch.tensor([1, 4, 2, 5, 3, 4])
    config = {"text_encoder": "all-minilm-l6-v2", "mf_dim": 2, "hard_negative_ratio": 0.4}
    first = cached_hard_negatives(dataset, (users, items), config, str(tmp_path))
    key = hard_negative_key("all-minilm-l6-v2", 2, 0.4, sentences, users, items)
    path = tmp_path / f"hard_negatives-{key}.pt"
    assert os.listdir(tmp_path) == [path.name]
    path.write_bytes(b"\x80\x02garbage")
    with caplog.at_level(logging.WARNING):
        again = cached_hard_negatives(dataset, (users, items), config, str(tmp_path))
    assert f"hard negatives cache file {path}" in caplog.text and "rebuilding it" in caplog.text
    assert torch.equal(again[0], first[0]) and torch.equal(again[1], first[1])
    # the mined sets never hold an item that shares a user with the item
    matrix = interaction_matrix(users, items, 3, len(sentences)).toarray()
    for item in range(1, len(sentences)):
        for negative in again[0][item, : again[1][item]].tolist():
            assert not (matrix[:, item] * matrix[:, negative]).any()
