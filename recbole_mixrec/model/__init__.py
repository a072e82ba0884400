from recbole_mixrec.model.mixrec import MixRec

__all__ = ["MixRec"]
