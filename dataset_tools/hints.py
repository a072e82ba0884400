"""Shell commands that build the atomic files of the datasets used in the paper.

``../shared/data`` is the read-only data checkout (preprocessed copies of two of the sets);
``<download_dir>`` stands for wherever the user put the raw Amazon 2018 files.
"""

# Raw Amazon 2018 category names (as in the downloaded file names).
AMAZON2018_CATEGORIES = {
    "amazon-arts": "Arts_Crafts_and_Sewing",
    "amazon-games": "Video_Games",
    "amazon-instruments": "Musical_Instruments",
    "amazon-pantry": "Prime_Pantry",
    "amazon-scientific": "Industrial_and_Scientific",
}

# Preprocessed copies in the shared data checkout: the LC-Rec json and a ratings CSV.
SHARED_SOURCES = {
    "amazon-scientific": "lcrec --input ../shared/data/amazon2018-scientific",
    "amazon-games": "csv --input ../shared/data/amazon2018-games",
}

KNOWN_DATASETS = tuple(sorted(AMAZON2018_CATEGORIES))


def build_hints(dataset_name, out_dir="dataset", download_dir="<download_dir>"):
    """The commands that create ``dataset_name``'s atomic files under ``out_dir`` (first the one
    from the shared checkout when there is one, then the one from the raw download); [] if unknown."""
    category = AMAZON2018_CATEGORIES.get(dataset_name)
    if category is None:
        return []
    target = f"--name {dataset_name} --out {out_dir}"
    raw = (f"python -m dataset_tools amazon2018 --reviews {download_dir}/{category}_5.json.gz "
           f"--meta {download_dir}/meta_{category}.json.gz {target}")
    shared = SHARED_SOURCES.get(dataset_name)
    return ([f"python -m dataset_tools {shared} {target}"] if shared else []) + [raw]
