"""Top-k recommendations from checkpoints (issue 14): the Python API against evaluation's own
``full_sort_predict``, new users (MixRec without the CF user position), the CLI, and the HTTP
service's answers, 4xx reasons and behaviour under a bounded concurrent load.

Checkpoints are trained once for this module (1 epoch, tiny settings)."""

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

from conftest import free_ports
from recbole_mixrec.quick_start import isolated_argv, load_data_and_model, run_mixrec
from recbole_mixrec.recommend import Recommender, RecommendError, main as recommend_main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# users with at most 40 interactions: a small dataset that trains in seconds
QUICK = {"epochs": 1, "MAX_ITEM_LIST_LENGTH": 10, "show_progress": False, "eval_batch_size": 4096,
         "user_inter_num_interval": "[0,40]"}
MODELS = ("SASRec", "MixRec", "LiteLLM4Rec", "Hydra")


@pytest.fixture(scope="module")
def checkpoints(tiny_config_dict, tmp_path_factory):
    folder = str(tmp_path_factory.mktemp("recommend-checkpoints"))
    ids = {"hidden_size": 16, "embedding_size": 16, "n_layers": 1, "train_batch_size": 4096}
    configs = {
        "SASRec": dict(QUICK, **ids),
        "Hydra": dict(QUICK, hidden_size=16, n_layers=1, train_batch_size=4096),
        "MixRec": dict(tiny_config_dict, **QUICK),  # NCF user vectors (MixRec.yaml default)
        "LiteLLM4Rec": dict(tiny_config_dict, **QUICK),
        "Pop": dict(QUICK),
    }
    return {
        model: run_mixrec(model, "ml-100k", config_dict=dict(config, checkpoint_dir=folder))["saved_model_file"]
        for model, config in configs.items()
    }


@pytest.fixture(scope="module")
def loaded(checkpoints):
    """model name -> (Recommender, RecBole's test loader) from one load of each checkpoint."""
    out = {}
    for model in MODELS:
        with isolated_argv():
            config, net, dataset, _, _, test_data = load_data_and_model(checkpoints[model])
        out[model] = (Recommender.from_loaded(config, net, dataset), test_data)
    return out


def tokens(rec, ids):
    return [rec.item_tokens[int(i)] for i in ids]


def evaluation_rows(rec, test_data, n_users=40):
    """``(user token, history ids, target id, scores)`` of the first test batch's users, with
    the scores RecBole's evaluation computes (``full_sort_predict`` on the test loader's batch)."""
    interaction = next(iter(test_data))[0]
    with torch.no_grad():
        scores = rec.model.full_sort_predict(interaction)
    seq, lengths = interaction[rec.model.ITEM_SEQ], interaction[rec.model.ITEM_SEQ_LEN]
    for row in range(n_users):
        history = seq[row, : lengths[row]].tolist()
        user = rec.user_tokens[int(interaction[rec.uid_field][row])]
        yield user, history, int(interaction[rec.iid_field][row]), scores[row]


def top_k(rec, scores, history, k=10):
    """Evaluation's ranking with the history's items (and padding) excluded."""
    scores = scores.clone()
    scores[0] = -torch.inf
    scores[torch.tensor(history)] = -torch.inf
    values, items = scores.topk(k)
    return tokens(rec, items), values


def assert_same_ranking(got, want_items, want_scores):
    assert [r.rank for r in got] == list(range(1, len(got) + 1))
    torch.testing.assert_close(torch.tensor([r.score for r in got]), want_scores.float(), atol=1e-4, rtol=1e-4)
    assert [r.item for r in got] == want_items


@pytest.mark.parametrize("model", ["SASRec", "LiteLLM4Rec", "Hydra"])
def test_history_gives_evaluation_ranking(loaded, model):
    """``recommend(history=...)`` with the history evaluation uses (test item left out) ranks
    as ``full_sort_predict`` does in evaluation; history items excluded on both sides."""
    rec, test_data = loaded[model]
    for _, history, _, scores in evaluation_rows(rec, test_data):
        got = rec.recommend(history=tokens(rec, history), k=10)
        assert_same_ranking(got, *top_k(rec, scores, history))
        assert not set(r.item for r in got) & set(tokens(rec, history))


def test_mixrec_known_user_with_history_gives_evaluation_ranking(loaded):
    """MixRec reads the user's CF vector: ``recommend(user=u, history=...)`` is evaluation's
    ranking for that user."""
    rec, test_data = loaded["MixRec"]
    assert rec.model.cf_model is not None
    for user, history, _, scores in evaluation_rows(rec, test_data):
        got = rec.recommend(user=user, history=tokens(rec, history), k=10)
        assert_same_ranking(got, *top_k(rec, scores, history))


def test_mixrec_new_user_masks_the_user_position(loaded):
    """A new user's scores do not depend on any user vector (the position is masked, not
    filled), are finite, and differ from the known user's, whose vector is read."""
    rec, test_data = loaded["MixRec"]
    user, history, _, _ = next(evaluation_rows(rec, test_data, 1))
    query_new = rec.resolve(history=tokens(rec, history))
    query_known = rec.resolve(user=user, history=tokens(rec, history))
    new, known = rec.scores([query_new, query_known])
    assert torch.isfinite(new).all()
    table = rec.model.cf_model.user_embedding.weight
    saved = table.detach().clone()
    try:
        with torch.no_grad():
            table.normal_(0, 5.0)  # every user vector replaced
        new_after, known_after = rec.scores([query_new, query_known])
    finally:
        with torch.no_grad():
            table.copy_(saved)
    torch.testing.assert_close(new_after, new)
    assert not torch.allclose(known_after, known)
    assert not torch.allclose(new, known)
    # batched with known users or alone: the same answer
    torch.testing.assert_close(rec.scores([query_new])[0], new, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("model", MODELS)
def test_known_user_reads_the_whole_stored_history(loaded, model):
    """``recommend(user=u)`` uses everything the dataset holds for u, test item included."""
    rec, test_data = loaded[model]
    for user, history, target, _ in evaluation_rows(rec, test_data, 10):
        stored = rec.histories[rec.user_token_id[user]].tolist()
        assert stored[-len(history) - 1:] == history + [target]
        got = rec.recommend(user=user, k=5)
        assert [r.item for r in got] == [r.item for r in rec.recommend(user=user, history=tokens(rec, stored), k=5)]
        assert not set(r.item for r in got) & set(tokens(rec, stored))


def test_exclusion_titles_batch_and_errors(loaded):
    rec, _ = loaded["SASRec"]
    # the history's items are excluded unless asked otherwise
    history = [r.item for r in rec.recommend(history=["50"], k=3, exclude_history=False)]
    kept = rec.recommend(history=history, k=5, exclude_history=False)
    assert set(history) & set(r.item for r in kept)
    assert not set(history) & set(r.item for r in rec.recommend(history=history, k=5))
    # exact titles resolve like tokens; results carry titles
    title, (item,) = next((t, ids) for t, ids in rec.title_ids.items() if len(ids) == 1)
    by_title = rec.recommend(history=[title], k=5)
    assert by_title == rec.recommend(history=[rec.item_tokens[item]], k=5)
    assert all(r.title == rec.titles[rec.item_token_id[r.item]] for r in by_title)
    # batch form: the same answers as one at a time
    other = rec.user_tokens[5]
    requests = ["196", {"history": ["50", title]}, {"user": other, "k": 3}]
    batch = rec.recommend_batch(requests, k=4)
    singles = [rec.recommend(user="196", k=4), rec.recommend(history=["50", title], k=4), rec.recommend(user=other, k=3)]
    for got, want in zip(batch, singles):  # batched scores differ in the last float bits
        assert [(r.rank, r.item, r.title) for r in got] == [(r.rank, r.item, r.title) for r in want]
        assert [r.score for r in got] == pytest.approx([r.score for r in want], abs=1e-5)
    # errors name what is wrong
    shared, ids = next((t, ids) for t, ids in rec.title_ids.items() if len(ids) > 1)
    with pytest.raises(RecommendError, match="ambiguous title") as err:
        rec.recommend(history=[shared])
    assert all(rec.item_tokens[i] in str(err.value) for i in ids)
    with pytest.raises(RecommendError, match=r"unknown item\(s\) \['nope', 'nada'\]"):
        rec.recommend(history=["nope", "50", "nada"])
    with pytest.raises(RecommendError, match="unknown user 'nobody'") as err:
        rec.recommend(user="nobody")
    assert err.value.status == 404
    for bad in ({"history": []}, {"user": "196", "k": 0}, {"user": "196", "k": rec.n_real_items + 1},
                {"user": "196", "k": "3"}, {}, {"history": "50"}, {"history": [["50"]]}):
        with pytest.raises(RecommendError):
            rec.recommend(**bad)
    assert len(rec.recommend(user="196", k=rec.n_real_items)) == rec.n_real_items - len(rec.histories[rec.user_token_id["196"]])


def test_general_model_scores_known_users_only(checkpoints):
    rec = Recommender(checkpoints["Pop"], quiet=True)
    assert len(rec.recommend(user="196", k=5)) == 5
    with pytest.raises(RecommendError, match="known users only"):
        rec.recommend(history=["50"])


def test_cli_prints_a_table(checkpoints, capsys):
    assert recommend_main(["--checkpoint", checkpoints["SASRec"], "--user", "196", "--k", "3"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("SASRec on ml-100k, user 196, top 3")
    assert lines[1].split() == ["rank", "item", "title", "score"]
    assert [line.split()[0] for line in lines[2:]] == ["1", "2", "3"]
    assert recommend_main(["--checkpoint", checkpoints["SASRec"], "--history", "50 172", "133", "--json"]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert len(answer) == 10 and set(answer[0]) == {"rank", "item", "title", "score"}
    assert recommend_main(["--checkpoint", checkpoints["SASRec"], "--user", "nobody"]) == 2
    assert "error: unknown user 'nobody'" in capsys.readouterr().err


# ----- HTTP service ---------------------------------------------------------------------------------
from recbole_mixrec.serve import BATCHER  # noqa: E402


def post(url, body, timeout=60):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(url + "/recommend", data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


@pytest.fixture(scope="module")
def server(loaded):
    from recbole_mixrec.serve import BackgroundServer

    with BackgroundServer(loaded["MixRec"][0], max_body=4096) as running:
        yield running


def test_service_answers(server, loaded):
    rec = loaded["MixRec"][0]
    with urllib.request.urlopen(server.url + "/health", timeout=30) as response:
        health = json.loads(response.read())
    assert health == {"status": "ok", "model": "MixRec", "dataset": "ml-100k",
                      "n_users": len(rec.histories), "n_items": rec.n_real_items}
    status, answer = post(server.url, {"user": "196", "k": 3})
    assert status == 200 and answer["user"] == "196" and answer["k"] == 3
    assert [item["item"] for item in answer["items"]] == [r.item for r in rec.recommend(user="196", k=3)]
    status, answer = post(server.url, {"history": ["50", 172], "k": 2, "exclude_history": False})
    assert status == 200 and answer["user"] is None and len(answer["items"]) == 2
    assert set(answer["items"][0]) == {"rank", "item", "title", "score"}


SHARED_TITLE = object()  # stands for a title that several items share


@pytest.mark.parametrize("body, status, reason", [
    (b"{bad json", 400, "malformed JSON"),
    (b"\xff\xfe", 400, "malformed JSON"),
    (b"[1, 2]", 400, "must be a JSON object"),
    ({"user": "nobody"}, 404, "unknown user 'nobody'"),
    ({"history": ["50", "zzz", "yyy"]}, 422, "unknown item(s) ['zzz', 'yyy']"),
    ({"history": [SHARED_TITLE]}, 422, "ambiguous title(s): "),
    ({"history": []}, 400, "history is empty"),
    ({"user": "196", "k": 0}, 400, "k must be between 1 and "),
    ({"user": "196", "k": 100000}, 400, "k must be between 1 and "),
    ({"user": "196", "k": "10"}, 400, "k must be an integer"),
    ({"user": "196", "k": 2.5}, 400, "k must be an integer"),
    ({"user": "196", "k": True}, 400, "k must be an integer"),
    ({"user": ["196"]}, 400, "user must be a string or an integer"),
    ({"history": "50 172"}, 400, "history must be a list"),
    ({"history": [None]}, 400, "history entries must be item tokens or titles"),
    ({"user": "196", "exclude_history": "no"}, 400, "exclude_history must be true or false"),
    ({"user": "196", "extra": 1}, 400, "unknown field(s) ['extra']"),
    ({}, 400, "give a user or a history"),
    ({"history": ["50"] * 1000}, 413, "request body over 4096 bytes"),
])
def test_service_rejects_bad_input(server, loaded, body, status, reason):
    if isinstance(body, dict) and body.get("history") == [SHARED_TITLE]:
        body = {"history": [next(t for t, ids in loaded["MixRec"][0].title_ids.items() if len(ids) > 1)]}
    got_status, answer = post(server.url, body)
    assert got_status == status
    assert set(answer) == {"error"} and reason in answer["error"]
    assert "\n" not in answer["error"] and "Traceback" not in answer["error"]


def test_service_unknown_route_and_method(server):
    for url, status in ((server.url + "/nothing", 404), (server.url + "/recommend", 405)):
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(url, timeout=30)
        assert err.value.code == status and "error" in json.loads(err.value.read())


def test_service_under_concurrent_load(server, loaded):
    """200 requests, 8 at a time: every answer is the one the Python API gives, and the
    service scored concurrent requests together."""
    rec = loaded["MixRec"][0]
    users, items = rec.user_tokens[1:21], rec.item_tokens[1:21]
    bodies = [{"user": users[i % 20], "k": 5} if i % 2 else {"history": [items[i % 20], items[(i + 7) % 20]], "k": 5}
              for i in range(200)]
    expected = {json.dumps(b): [r.item for r in rec.recommend(b.get("user"), b.get("history"), 5)] for b in bodies}
    server.app[BATCHER].batch_sizes.clear()
    start = time.perf_counter()
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda b: post(server.url, b), bodies))
    assert time.perf_counter() - start < 120
    for body, (status, answer) in zip(bodies, answers):
        assert status == 200
        assert [item["item"] for item in answer["items"]] == expected[json.dumps(body)]
    sizes = server.app[BATCHER].batch_sizes
    assert sum(sizes) == 200 and max(sizes) > 1


def test_serve_command_line(checkpoints):
    """``python -m recbole_mixrec.serve`` loads, answers on 127.0.0.1 and stops on SIGTERM."""
    port = free_ports()[0]
    env = dict(os.environ, PYTHONPATH=ROOT, OMP_NUM_THREADS="1")
    process = subprocess.Popen(
        [sys.executable, "-m", "recbole_mixrec.serve", "--checkpoint", checkpoints["SASRec"], "--port", str(port)],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while True:
            try:
                with urllib.request.urlopen(url + "/health", timeout=5) as response:
                    assert json.loads(response.read())["model"] == "SASRec"
                break
            except (urllib.error.URLError, ConnectionError):
                assert process.poll() is None and time.time() < deadline, process.stdout.read()
                time.sleep(0.5)
        status, answer = post(url, {"history": ["50"], "k": 4})
        assert status == 200 and len(answer["items"]) == 4
        assert post(url, b"{")[0] == 400
    finally:
        process.terminate()
        process.wait(timeout=30)
    output = process.stdout.read()
    assert "Traceback" not in output, output
