"""``python -m ca_core.evaluate``: the evaluation command (:func:`ca_core.repro.cli.evaluate_main`)."""
