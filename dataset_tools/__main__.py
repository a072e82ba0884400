"""Entry point for ``python -m dataset_tools``."""
import sys

from .cli import main

sys.exit(main())
