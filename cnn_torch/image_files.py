"""Single image files for ``predict``, read the way the lesson reads them with Keras:

    new_img_pil = keras.utils.load_img("Jabiru_TGS.JPG", target_size=(32, 32))
    new_img_arr = keras.utils.img_to_array(new_img_pil)
    new_img_float = new_img_arr.reshape(1, 32, 32, 3) / 255.0

``load_img`` opens the file with PIL (the first frame of an animated GIF), converts it to
RGB (grayscale, palette and RGBA images too; the alpha channel is dropped, not blended)
and, if its size differs, resizes it with PIL's *nearest* interpolation, stretching it to
the target size without keeping the aspect ratio. :func:`load_image` makes the same PIL
calls and returns ``uint8`` CHW, the layout of every image in cnn-torch; the model input
is then scaled like the training data (:func:`to_model_input`).
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path

import torch

from cnn_torch.errors import UserError

# PIL's name for each number of channels a model can take.
_PIL_MODES = {3: "RGB", 1: "L"}


def load_image(path: str | os.PathLike, image_size: tuple[int, int], channels: int = 3) -> torch.Tensor:
    """One image file as a ``uint8`` tensor of shape (channels, height, width).

    ``image_size`` is (height, width), like Keras's ``target_size``. Any format PIL reads
    works (PNG, JPEG, BMP, GIF, ...), of any size. A file that cannot be read or decoded
    raises a UserError that names it.
    """
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    if channels not in _PIL_MODES:
        raise UserError(f"models with {channels} input channels cannot read image files: use 3 (RGB) or 1 (grayscale)")
    path = Path(path)
    height, width = int(image_size[0]), int(image_size[1])
    try:
        raw = path.read_bytes()
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise UserError(f"cannot read image {path} ({reason}): check the file name and its permissions") from None
    try:
        # Keras: PIL.Image.open on the file's bytes, convert, then resize if the size differs
        with Image.open(io.BytesIO(raw)) as pil_image:
            converted = pil_image.convert(_PIL_MODES[channels])
        if converted.size != (width, height):  # PIL sizes are (width, height)
            converted = converted.resize((width, height), Image.Resampling.NEAREST)
        array = np.asarray(converted, dtype=np.uint8)
    except Exception as error:  # PIL raises many types: unknown format, truncated data, ...
        if isinstance(error, UnidentifiedImageError):
            reason = "not an image format PIL can read"
        else:
            reason = " ".join(str(error).split())[:80] or type(error).__name__
        raise UserError(f"cannot decode image {path} ({reason}): pass a PNG, JPEG, BMP or GIF image file") from None
    tensor = torch.from_numpy(array.copy())
    return tensor[None] if tensor.ndim == 2 else tensor.permute(2, 0, 1).contiguous()  # HWC -> CHW


def load_images(paths: Sequence[str | os.PathLike], image_size: tuple[int, int], channels: int = 3) -> torch.Tensor:
    """Several image files as one ``uint8`` (N, channels, height, width) batch."""
    if not paths:
        raise UserError("no image files given: pass one or more image paths")
    return torch.stack([load_image(path, image_size, channels) for path in paths])


def to_model_input(images: torch.Tensor, normalisation: dict) -> torch.Tensor:
    """``uint8`` images -> float32 model inputs, scaled as the checkpoint's training data was.

    ``normalisation`` is a checkpoint's ``{"scale", "mean", "std"}``: pixels are multiplied
    by ``scale`` (the lesson's ``/ 255.0``), then, if given, per-channel ``mean`` and
    ``std`` are applied.
    """
    inputs = images.to(torch.float32) * float(normalisation.get("scale", 1 / 255.0))
    mean, std = normalisation.get("mean"), normalisation.get("std")
    if mean is not None:
        inputs -= torch.as_tensor(mean, dtype=torch.float32).reshape(1, -1, 1, 1)
    if std is not None:
        inputs /= torch.as_tensor(std, dtype=torch.float32).reshape(1, -1, 1, 1)
    return inputs
