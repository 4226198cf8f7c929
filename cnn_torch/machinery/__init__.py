"""What runs around the lesson's loop without being one of its steps: the input checks, the
progress text, Ctrl-C, the first-batch trace and ``--break-at``, CPU core sharing.
``session.training_session`` sets up the ones that last the whole loop, once, around it.

A learner need not read it; a change to how ``fit`` checks, prints or stops goes here.
"""
