"""``tf.image.resize_with_pad``, once, for the two places Keras uses it: loading a folder with
``pad_to_aspect_ratio=True`` (``sources/image_files.py``) and the transfer model's first layer
(``keras_rules/transfer.py``).

It lives down here, under both, because the data sources and Keras's rules may not import each
other (pyproject.toml's layers); it is arithmetic on tensors, nothing a learner needs to read.
"""

from __future__ import annotations

import numpy as np
import torch
from torchvision.transforms.v2 import InterpolationMode
from torchvision.transforms.v2 import functional as tvf


def resize_with_pad(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Float images (..., H, W) scaled to fit inside ``size`` (height, width), aspect ratio kept,
    then padded with zeros to exactly ``size``, the image in the middle.

    TensorFlow's arithmetic, in float32 as TensorFlow does it (float64 can floor the other way):
    the larger of the two ratios decides, the sizes and the top/left padding are rounded down.
    The resize is ``tf.image.resize``'s bilinear: half-pixel centres, no antialiasing.
    """
    height, width = (np.float32(n) for n in images.shape[-2:])
    target_height, target_width = np.float32(size[0]), np.float32(size[1])
    ratio = max(width / target_width, height / target_height)
    fit_height, fit_width = height / ratio, width / ratio
    resized_height, resized_width = int(np.floor(fit_height)), int(np.floor(fit_width))
    top = max(0, int(np.floor((target_height - fit_height) / np.float32(2))))
    left = max(0, int(np.floor((target_width - fit_width) / np.float32(2))))
    resized = tvf.resize(images, [resized_height, resized_width], interpolation=InterpolationMode.BILINEAR,
                         antialias=False)  # fmt: skip
    padding = [left, top, int(size[1]) - resized_width - left, int(size[0]) - resized_height - top]
    return tvf.pad(resized, padding, fill=0.0) if any(padding) else resized
