"""The one exception type a learner sees: a one-line message that names the fix."""


class UserError(Exception):
    """Bad input or a fixable problem. The CLI prints ``error: <message>`` and exits 2.

    The message is one line: what is wrong, then what to do about it.
    """
