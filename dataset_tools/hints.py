"""Shell commands that build the atomic files of the datasets used in the paper.

Commands are meant to be run from the repository root, where RecBole's default
``data_path`` (``dataset/``) resolves; ``../shared/data`` is the read-only data checkout.
"""

# Raw Amazon 2018 category names (as in the downloaded file names) for the raw-file datasets.
AMAZON2018_CATEGORIES = {
    "amazon-arts": "Arts_Crafts_and_Sewing",
    "amazon-instruments": "Musical_Instruments",
    "amazon-pantry": "Prime_Pantry",
}

_HINTS = {
    "amazon-scientific": "python -m dataset_tools lcrec --input ../shared/data/amazon2018-scientific "
    "--name amazon-scientific --out dataset",
    # Also buildable from raw Video_Games_5.json.gz + meta_Video_Games.json.gz with `amazon2018`.
    "amazon-games": "python -m dataset_tools csv --input ../shared/data/amazon2018-games "
    "--name amazon-games --out dataset",
    **{
        name: f"python -m dataset_tools amazon2018 --reviews {cat}_5.json.gz --meta meta_{cat}.json.gz "
        f"--name {name} --out dataset"
        for name, cat in AMAZON2018_CATEGORIES.items()
    },
}

KNOWN_DATASETS = tuple(sorted(_HINTS))


def build_hint(dataset_name: str):
    """Return the command that creates ``dataset_name``'s atomic files, or None if unknown."""
    return _HINTS.get(dataset_name)
