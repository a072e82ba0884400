"""Run MixRec or a RecBole baseline: ``python run_recbole_mixrec.py --model=MixRec --dataset=ml-100k``."""

import sys

from recbole_mixrec.cli import main

if __name__ == "__main__":
    sys.exit(main())
