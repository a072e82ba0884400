"""Token sequences built from item ids (model/inputs.py), on hand-written cases."""

import torch

from recbole_mixrec.model.inputs import last_items, length_groups, pack_items

SEQ = 99
# item 0 = padding; item 1 = tokens [11, 12]; item 2 = [21]; item 3 = [31, 32, 33]
TOKENS = torch.tensor([[0, 0, 0], [11, 12, 0], [21, 0, 0], [31, 32, 33]])
LENGTHS = torch.tensor([0, 2, 1, 3])


def test_last_items_keeps_the_most_recent_items_left_aligned():
    seq = torch.tensor([[5, 6, 7, 8, 0], [5, 6, 0, 0, 0]])
    window, count = last_items(seq, torch.tensor([4, 2]), 3)
    assert window.tolist() == [[6, 7, 8], [5, 6, 0]]
    assert count.tolist() == [3, 2]


def test_pack_items_concatenates_sentences_each_followed_by_the_marker():
    items = torch.tensor([[1, 2, 3], [3, 1, 0]])
    ids, mask, markers, segments = pack_items(items, torch.tensor([3, 2]), TOKENS, LENGTHS, SEQ, torch.tensor([7]))
    assert ids[0].tolist() == [7, 11, 12, SEQ, 21, SEQ, 31, 32, 33, SEQ]
    assert ids[1].tolist() == [7, 31, 32, 33, SEQ, 11, 12, SEQ, 0, 0]
    assert mask.tolist() == [[1] * 10, [1] * 8 + [0, 0]]
    assert markers[0].tolist() == [3, 5, 9]
    assert markers[1].tolist() == [4, 7, 0]  # invalid slot -> 0
    assert (ids.gather(1, markers[:, :2]) == SEQ).all()
    assert segments.tolist() == [[-1, 0, 0, 0, 1, 1, 2, 2, 2, 2], [-1, 0, 0, 0, 0, 1, 1, 1, -2, -2]]


def test_pack_items_without_prefix_for_single_items():
    ids, mask, markers, _ = pack_items(
        torch.tensor([[2], [3]]), torch.tensor([1, 1]), TOKENS, LENGTHS, SEQ, torch.tensor([], dtype=torch.long)
    )
    assert ids.tolist() == [[21, SEQ, 0, 0], [31, 32, 33, SEQ]]
    assert markers.tolist() == [[1], [3]]


def test_next_item_labels_shift_the_window_and_end_with_the_target():
    from recbole_mixrec.model.inputs import next_item_labels

    window = torch.tensor([[5, 6, 7], [8, 9, 0]])
    labels = next_item_labels(window, torch.tensor([3, 2]), torch.tensor([70, 90]))
    assert labels.tolist() == [[6, 7, 70], [9, 90, 0]]
    # overlapping windows: only each row's last 2 positions (train_window_stride)
    labels = next_item_labels(window, torch.tensor([3, 2]), torch.tensor([70, 90]), supervised=2)
    assert labels.tolist() == [[0, 7, 70], [9, 90, 0]]


def test_supervised_positions_only_where_windows_overlap():
    from recbole_mixrec.model.inputs import supervised_positions

    def config(**keys):
        return {"train_samples": "windows", "max_seq_items": 5, "train_window_stride": None, **keys}

    assert supervised_positions(config()) is None
    assert supervised_positions(config(train_window_stride=5)) is None
    assert supervised_positions(config(train_window_stride=2)) == 2
    assert supervised_positions(config(train_window_stride=2, train_samples="last")) is None


def test_length_groups_start_a_group_below_ratio_times_its_longest():
    lengths = torch.tensor([10, 100, 60, 45, 20, 100])
    groups = length_groups(lengths, 0.5)
    # 100, 100, 60 (>= 50) | 45 (< 50) | 20 (< 22.5), 10 (>= 10)
    assert [g.tolist() for g in groups] == [[1, 5, 2], [3], [4, 0]]
    for group in groups:  # padding to the group's longest at most doubles its tokens
        assert int(lengths[group].max()) * len(group) <= 2 * int(lengths[group].sum())
    assert [g.tolist() for g in length_groups(lengths, None)] == [[0, 1, 2, 3, 4, 5]]
