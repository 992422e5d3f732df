"""``python -m ca_core.evaluate``: runs :func:`ca_core.repro.cli.evaluate_main` (an entry point; nothing imports it)."""
import sys

from ca_core.repro.cli import evaluate_main

sys.exit(evaluate_main())
