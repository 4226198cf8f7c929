"""The proof that ``fit`` is Keras's ``fit``: the same model trained by both, weights copied
between them, the gap measured. Used by the tests and ``scripts/parity_table.py``; not by a learner.
"""
