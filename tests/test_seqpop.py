"""SeqPop: popularity under the sequential protocol, checked against a ranking by hand."""

import torch
from recbole.data import data_preparation

from recbole_mixrec.quick_start import build_config, load_dataset, run_mixrec


def test_seqpop_scores_are_training_popularity_and_its_metrics_match_a_hand_ranking(tiny_config_dict):
    config_dict = {k: tiny_config_dict[k] for k in ("checkpoint_dir", "show_progress")}
    result = run_mixrec("SeqPop", "ml-100k", config_dict=config_dict)
    # by hand: count every training interaction, rank all items for every test user
    config = build_config("SeqPop", "ml-100k", config_dict=config_dict)
    train, _, test = data_preparation(config, load_dataset(config))
    users, items = train._dataset.train_pairs
    held_out = set(zip(test._dataset.inter_feat["user_id"].tolist(), test._dataset.inter_feat["item_id"].tolist()))
    assert not held_out & set(zip(users.tolist(), items.tolist()))  # no test interaction counted
    counts = torch.bincount(items, minlength=train._dataset.item_num).float()
    counts[0] = -1  # padding is never recommended
    targets = test._dataset.inter_feat["item_id"]
    # RecBole takes torch.topk, whose order among equal scores is not defined: bound the metrics
    # by the target first among its ties and last
    target_counts = counts[targets].unsqueeze(1)
    best = (counts.unsqueeze(0) > target_counts).sum(1)
    worst = (counts.unsqueeze(0) >= target_counts).sum(1) - 1

    def metrics(ranks):
        hits = (ranks < 10).float()
        return {"ndcg@10": (hits / torch.log2(ranks.float() + 2)).mean().item(),
                "mrr@10": (hits / (ranks.float() + 1)).mean().item(), "recall@10": hits.mean().item()}

    low, high = metrics(worst), metrics(best)
    for name, value in result["test_result"].items():
        assert low[name] - 1e-4 <= value <= high[name] + 1e-4, name
    assert high["ndcg@10"] - low["ndcg@10"] < 0.005  # the bounds are tight enough to mean something
