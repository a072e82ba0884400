"""Hard-negative sets (spec section 5) on a hand-made case and on ml-100k."""

import torch

from recbole_mixrec.data.hard_negatives import (
    cached_hard_negatives,
    interaction_matrix,
    mine_hard_negatives,
    nearest_items,
    text_embeddings,
)


def test_nearest_items_skip_the_item_itself_and_padding():
    vectors = torch.tensor([[100.0], [0.0], [1.0], [3.0], [10.0]])
    assert nearest_items(vectors, 2).tolist()[1:] == [[2, 3], [1, 3], [2, 1], [3, 2]]


def test_sets_are_the_union_of_both_spaces_minus_co_occurring_items():
    # 7 items (0 = padding); text space neighbours: 1-2, 3-4, 5-6; MF space: 1-6, 2-5, 3-4
    text = torch.tensor([[1e3], [0.0], [0.1], [10.0], [10.1], [20.0], [20.1]])
    mf = torch.tensor([[1e3], [0.0], [5.0], [10.0], [10.1], [5.1], [0.1]])
    # user 0 saw items 1 and 2 together; user 1 saw 3 and 4
    users = torch.tensor([0, 0, 1, 1])
    items = torch.tensor([1, 2, 3, 4])
    matrix = interaction_matrix(users, items, 2, 7)
    negatives, sizes = mine_hard_negatives(text, mf, matrix, ratio=1 / 6)  # one neighbour per space
    sets = [set(negatives[i, : sizes[i]].tolist()) for i in range(7)]
    assert sets[0] == set()
    assert sets[1] == {6}  # text neighbour 2 co-occurs with 1; MF neighbour 6
    assert sets[2] == {5}  # text neighbour 1 co-occurs
    assert sets[3] == set() and sets[4] == set()  # 3 and 4 are each other's neighbour in both, and co-occur
    assert sets[5] == {6, 2}
    assert sizes.max() <= 2  # at most one per space


def test_ml100k_sets_have_the_configured_size_and_never_co_occur(ml100k_dataset, ml100k_config, ml100k_splits):
    train = ml100k_splits[0]._dataset
    negatives, sizes = train.hard_negatives
    users, items = train.train_pairs
    per_space = -(-ml100k_config["hard_negative_ratio"] * (ml100k_dataset.item_num - 1) // 1)
    assert int(sizes.max()) <= 2 * per_space and sizes.sum() > 0
    matrix = interaction_matrix(users, items, ml100k_dataset.user_num, ml100k_dataset.item_num).tocsc()
    for item in torch.nonzero(sizes).squeeze(1)[:200].tolist():
        seen_by = set(matrix[:, item].nonzero()[0])
        for negative in negatives[item, : sizes[item]].tolist():
            assert negative != item and negative != 0
            assert not seen_by & set(matrix[:, negative].nonzero()[0]), (item, negative)


def test_text_embeddings_are_mean_pooled_minilm_sentence_vectors():
    vectors = text_embeddings(["red pen", "blue pen", "jazz vinyl record"])
    assert vectors.shape == (3, 384)
    cos = torch.nn.functional.cosine_similarity
    assert cos(vectors[0], vectors[1], dim=0) > cos(vectors[0], vectors[2], dim=0)


def test_mining_and_cache_hits_leave_the_global_random_stream_alone(ml100k_splits, ml100k_config, tmp_path):
    # else a caller building the dataset itself gets a random stream that depends on the cache
    train = ml100k_splits[0]._dataset
    expected = train.hard_negatives
    for _ in ("mined", "read from the cache"):
        torch.manual_seed(123)
        negatives, sizes = cached_hard_negatives(train, train.train_pairs, ml100k_config, str(tmp_path))
        after = torch.rand(4)
        torch.manual_seed(123)
        assert torch.equal(after, torch.rand(4))  # as if nothing had drawn in between
        assert torch.equal(negatives, expected[0]) and torch.equal(sizes, expected[1])
    assert len(list(tmp_path.iterdir())) == 1  # the second call read the cache
