"""``python -m ca_core.train``: the command line of :mod:`ca_core.repro.cli` (an entry point; nothing imports it)."""
import sys

from ca_core.repro.cli import main

sys.exit(main())
