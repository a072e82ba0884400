"""Item sentences (spec section 1): each item's attributes flattened to "key value ..." text."""

import numpy as np
import torch
from recbole.utils import FeatureType, set_color

from recbole_mixrec.errors import MixRecError


class ItemTextError(MixRecError):
    """Bad ``item_text_fields`` configuration or an item without text under ``item_text_missing: error``."""


def field_key(field):
    """The key word(s) an attribute contributes: ``movie_title`` -> ``movie title``."""
    return field.replace("_", " ")


def _field_values(dataset, field):
    """The text of ``field`` for every internal item id (row i of ``item_feat`` is item i;
    index 0 is the padding item). ``item_feat`` is a DataFrame before RecBole's ``build()``
    and an Interaction of tensors after it (a model such as Hydra reads it then)."""
    column = dataset.item_feat[field]
    column = column.numpy() if torch.is_tensor(column) else column.to_numpy()
    ftype = dataset.field2type[field]
    if ftype == FeatureType.TOKEN:
        id2token = dataset.field2id_token[field]
        return [str(id2token[int(i)]) if i > 0 else "" for i in column]
    if ftype == FeatureType.TOKEN_SEQ:
        id2token = dataset.field2id_token[field]
        return [" ".join(str(id2token[int(i)]) for i in np.atleast_1d(row) if i > 0) for row in column]
    if ftype == FeatureType.FLOAT:
        return ["" if np.isnan(v) else f"{v:g}" for v in column.astype(float)]
    raise ItemTextError(f"item_text_fields: field '{field}' has type {ftype.value}, not text")


def build_item_sentences(dataset, fields, missing="keep"):
    """Return ``(sentences, n_missing)``: one sentence per internal item id.

    The sentence is ``"k1 v1 k2 v2 ..."`` in the order of ``fields``; empty values are skipped.
    An item with no text at all gets its key names only (spec decision) and is counted, or,
    with ``missing="error"``, raises. Index 0 (padding) gets ``""``.
    """
    if missing not in ("keep", "error"):
        raise ItemTextError(f"item_text_missing '{missing}' is not one of ['keep', 'error']")
    if not fields:
        raise ItemTextError("item_text_fields is empty: name the item fields that describe an item")
    item_fields = set(dataset.item_feat.columns) if dataset.item_feat is not None else set()
    unknown = [f for f in fields if f not in item_fields]
    if unknown:
        raise ItemTextError(
            f"item_text_fields names unknown item field(s) {unknown}; item fields loaded: "
            f"{sorted(item_fields - {dataset.iid_field})}. Add them to load_col: item: [...]"
        )
    values = {f: _field_values(dataset, f) for f in fields}
    sentences, missing_ids = [""], []
    for item in range(1, dataset.item_num):
        parts = [f"{field_key(f)} {values[f][item]}" for f in fields if values[f][item].strip()]
        if not parts:
            missing_ids.append(item)
            parts = [field_key(f) for f in fields]
        sentences.append(" ".join(parts))
    if missing_ids and missing == "error":
        tokens = dataset.field2id_token[dataset.iid_field]
        examples = [str(tokens[i]) for i in missing_ids[:5]]
        raise ItemTextError(
            f"{len(missing_ids)} item(s) have no text in {fields} (e.g. item_id {examples}); "
            "set item_text_missing: keep to use key names only"
        )
    return sentences, len(missing_ids)


def configured_item_sentences(dataset, config, logger):
    """``build_item_sentences`` with the config's ``item_text_fields`` / ``item_text_missing``;
    the items that got key names only are counted in the log."""
    sentences, n_missing = build_item_sentences(
        dataset, list(config["item_text_fields"] or []), missing=config["item_text_missing"] or "keep"
    )
    if n_missing:
        logger.warning(
            set_color("items without text", "red")
            + f": {n_missing} of {dataset.item_num - 1} (they use key names only)"
        )
    return sentences


def item_text_vectors(dataset, config, logger):
    """Frozen sentence vectors ``[item_num, dim]`` of every item's sentence (row 0, padding:
    zeros), from the config's ``text_encoder`` (mean pooling, as for the hard negatives)."""
    from recbole_mixrec.data.hard_negatives import text_embeddings

    sentences = configured_item_sentences(dataset, config, logger)
    return text_embeddings(sentences, config["text_encoder"] or "all-minilm-l6-v2")
