from recbole_mixrec.data.dataset import MixRecDataset

__all__ = ["MixRecDataset"]
