"""The fault matrix: bad inputs and faults a new user meets, run through the real CLI.

Each case (``cases_config``, ``cases_data``, ``cases_models``, ``cases_checkpoints``,
``cases_storage``) prepares its own directory from shared tiny artifacts
(:mod:`faultmatrix.fixtures`) and names the command line to run and what the error message
must name. :mod:`faultmatrix.runner` runs ``ppminilm.cli.main`` in-process and classifies the
outcome (:data:`faultmatrix.runner.OUTCOMES`): ``clear`` is the promise (non-zero exit, one
line naming the file/line/field or the service, no traceback, nothing stored changed).

``python tests/faultmatrix/runner.py`` prints the outcome of every case and the counts (how
the before/after figures of the reliability work were measured).
"""
