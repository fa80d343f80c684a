"""``python -m coreperturb.cli``."""

from coreperturb.cli import run

run()
