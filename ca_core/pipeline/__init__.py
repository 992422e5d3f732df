"""``python -m ca_core.pipeline``: the reproduction runner's command (:mod:`ca_core.repro.pipeline`)."""
