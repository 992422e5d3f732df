"""The reproduction of the paper, on top of the library (nothing in the library imports it).

``config`` (profiles and their schema) -> ``runs`` (the run folder) -> ``experiment`` (data, models,
training and evaluation of a profile) -> ``views``, ``report``, ``figures``, ``explorer`` (what the
book shows) -> ``notebook`` (the notebooks' setup), ``pipeline`` and ``cli`` (the commands);
``paper`` holds the paper's numbers.
"""
