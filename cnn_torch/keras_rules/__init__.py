"""Keras's own rules, written for PyTorch: its optimizers (``optim``), augmentation layers
(``augment``), L2 regularizer, ``EarlyStopping``/``ModelCheckpoint`` (``stopping``), the
``TensorBoard`` callback, Keras's layers (``layers``) and the sibling lesson's transfer model.

A learner reads one when an episode uses it by its Keras name; the lesson's loop needs none of them.
"""
