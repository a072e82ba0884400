"""Converters from Amazon Review 2018 data to RecBole atomic files (``python -m dataset_tools``)."""
from .errors import DatasetToolError
from .hints import KNOWN_DATASETS, build_hints

__all__ = ["DatasetToolError", "KNOWN_DATASETS", "build_hints"]
