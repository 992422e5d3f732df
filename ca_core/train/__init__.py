"""``python -m ca_core.train``: the training command (:func:`ca_core.repro.cli.main`); the training
loop itself is the library's :mod:`ca_core.training`."""
