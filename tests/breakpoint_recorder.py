"""A stand-in for ``pdb``: ``PYTHONBREAKPOINT=breakpoint_recorder.record`` makes every
``breakpoint()`` call :func:`record`, which notes what the caller has in scope."""

from __future__ import annotations

import sys

CALLS: list[dict] = []


def record(*args, **kwargs) -> None:
    """Record the caller's epoch, step and the shapes of its tensors; then carry on."""
    names = sys._getframe(1).f_locals  # the frame that called breakpoint(): fit's loop
    CALLS.append(
        {
            "epoch": names.get("epoch"),
            "step": names.get("step"),
            "shapes": {
                name: tuple(names[name].shape) for name in ("images", "labels", "logits", "loss") if name in names
            },
            "loss_has_graph": getattr(names.get("loss"), "grad_fn", None) is not None,
        }
    )
