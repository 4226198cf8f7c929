"""The command line: ``scripts/train.py``, ``evaluate.py``, ``predict.py``, ``compare.py``,
``plot_history.py`` and ``lesson_data.py`` (also ``cnn-torch COMMAND``), their flags, and the run
folders they write.

A learner uses it from the shell and need not read it to learn the loop. Nothing in the rest of
the package imports it (a checked contract: ``tests/test_architecture.py``).
"""
