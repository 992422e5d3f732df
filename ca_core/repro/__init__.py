"""The reproduction of the paper, on top of the library (nothing in the library imports it).

``config`` (profiles and their schema) -> ``runs`` (:class:`~ca_core.repro.runs.Run`: a profile and
its run folder, its trained models and evaluated cells, the readers of its results) -> ``experiment``
(data, training and evaluation of a run) -> ``views``, ``report``, ``claims``, ``figures``,
``explorer`` (what the book shows: functions of a ``Run``) -> ``notebook`` (the notebooks' setup),
``pipeline`` and ``cli`` (the commands); ``paper`` holds the paper's numbers.
"""
