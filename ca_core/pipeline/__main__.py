"""``python -m ca_core.pipeline``: runs :func:`ca_core.repro.pipeline.main` (an entry point; nothing imports it)."""
import sys

from ca_core.repro.pipeline import main

sys.exit(main())
