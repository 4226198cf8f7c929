"""Image files into ``uint8`` tensors, decoded and resized the way Keras's
``image_dataset_from_directory(image_size=...)`` does it.

Decoding: JPEG as TensorFlow decodes it, by default (``jpeg_decoder="keras"``): libjpeg-turbo
with its fast integer inverse DCT and fancy upsampling, ``tf.io.decode_jpeg``'s defaults, through
simplejpeg. PIL and torchvision use the accurate inverse DCT, which reads the same file up to a
few levels apart (``jpeg_decoder="accurate"`` keeps it). Every other format (PNG, GIF, BMP, ...)
is decoded by PIL. Every image becomes RGB: grayscale is repeated over three channels and an
alpha channel is dropped, not blended, as ``tf.image.decode_image(channels=3)`` does; an
animated GIF gives its first frame.

Resizing (:func:`resize`): Keras resizes every image to ``image_size`` with bilinear
interpolation and no antialiasing (``tf.image.resize``), stretching it unless asked to
keep the aspect ratio: ``crop_to_aspect_ratio`` first cuts the largest centred box of the
target's aspect ratio (``smart_resize``); ``pad_to_aspect_ratio`` resizes to fit and pads
with black (``tf.image.resize_with_pad``). Keras keeps the result as float32; cnn-torch
keeps ``uint8`` (a quarter of the memory) and rounds, so each pixel is within 0.5 of
Keras's value.

``predict`` reads a learner's own image with :func:`load_image`, decoded and resized exactly as
the training images were: the lesson's ``keras.utils.load_img(target_size=...)`` would use
PIL's nearest neighbour instead, which shows the model a blockier image than it trained on.
"""

from __future__ import annotations

import functools
import io
import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import torch

from cnn_torch.errors import UserError
from cnn_torch.platform.device import as_float
from cnn_torch.platform.tf_resize import resize_with_pad

_JPEG_EXTENSIONS = (".jpeg", ".jpg")
# "keras": tf.io.decode_jpeg's pixels (libjpeg-turbo's fast integer DCT); "accurate": PIL's (the accurate DCT)
JPEG_DECODERS = ("keras", "accurate")
# How every JPEG file starts (SOI and the next marker's 0xFF): tf.io.decode_image tells JPEG by it, not by the name.
_JPEG_SIGNATURE = b"\xff\xd8\xff"


# --------------------------------------------------------------------------- resizing


def resize(
    images: torch.Tensor,
    image_size: tuple[int, int],
    crop_to_aspect_ratio: bool = False,
    pad_to_aspect_ratio: bool = False,
) -> torch.Tensor:
    """``uint8`` images (C, H, W) or (N, C, H, W) resized to ``image_size`` (height, width), as Keras does.

    Bilinear, half-pixel centres, no antialiasing (``tf.image.resize``'s default), computed
    in float32 with torchvision's v2 ``resize`` and rounded back to ``uint8``. Images already
    of that size come back unchanged.
    """
    from torchvision.transforms.v2 import InterpolationMode
    from torchvision.transforms.v2 import functional as tvf

    if crop_to_aspect_ratio and pad_to_aspect_ratio:
        raise UserError("crop_to_aspect_ratio and pad_to_aspect_ratio cannot both be set: choose one, as in Keras")
    target_height, target_width = int(image_size[0]), int(image_size[1])
    height, width = int(images.shape[-2]), int(images.shape[-1])
    if (height, width) == (target_height, target_width):
        return images
    # float, not uint8: torch's uint8 kernel rounds differently per CPU; channels-last: the
    # same numbers, about twice as fast on the CPU for a batch
    memory_format = torch.channels_last if images.ndim == 4 else torch.contiguous_format
    pixels = images.to(torch.float32, memory_format=memory_format)
    if crop_to_aspect_ratio:  # keras.preprocessing.image.smart_resize: the largest centred box
        crop_height = max(min(height, int(float(width * target_height) / target_width)), 1)
        crop_width = max(min(width, int(float(height * target_width) / target_height)), 1)
        top, left = int(float(height - crop_height) / 2), int(float(width - crop_width) / 2)
        pixels = tvf.crop(pixels, top, left, crop_height, crop_width)
    if pad_to_aspect_ratio:  # tf.image.resize_with_pad: resize to fit, then pad the rest with 0
        pixels = resize_with_pad(pixels, (target_height, target_width))
    else:
        pixels = tvf.resize(pixels, [target_height, target_width], interpolation=InterpolationMode.BILINEAR,
                            antialias=False)  # fmt: skip
    return pixels.round_().clamp_(0, 255).to(torch.uint8)


# --------------------------------------------------------------------------- decoding


def decode_files(paths: Sequence[str], jpeg_decoder: str = "keras") -> list[torch.Tensor]:
    """Decode image files into ``uint8`` RGB tensors (3, H, W), each at its own size."""
    return [decode_image(path, read_bytes(path), "RGB", jpeg_decoder) for path in paths]


def read_bytes(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as error:
        raise UserError(
            f"cannot read image {path} ({error.strerror or error}): check the file name and its permissions"
        ) from None


def jpeg_decoder_in_use(jpeg_decoder: str = "keras") -> str:
    """The JPEG decoder that runs when ``jpeg_decoder`` is asked for: itself, or "accurate" when
    "keras"'s library, simplejpeg, is not installed (one warning then names the install)."""
    if jpeg_decoder not in JPEG_DECODERS:
        raise UserError(
            f"unknown JPEG decoder {jpeg_decoder!r}: use keras (TensorFlow's pixels, the default) or accurate (PIL's)"
        )
    if jpeg_decoder == "keras" and _simplejpeg() is None:
        return "accurate"
    return jpeg_decoder


@functools.cache  # one import, and one warning when it is missing
def _simplejpeg():
    try:
        import simplejpeg
    except ImportError:
        warnings.warn(
            "simplejpeg is not installed, so JPEG files are decoded by PIL's accurate decoder, up to a few levels"
            " from the pixels Keras reads: pip install simplejpeg",
            stacklevel=4,
        )
        return None
    return simplejpeg


def decode_image(path: str, raw: bytes, mode: str, jpeg_decoder: str = "keras") -> torch.Tensor:
    """One image file's bytes as a ``uint8`` tensor (C, H, W): ``mode`` "RGB" (C = 3) or "L" (C = 1).

    A JPEG file, by default, as TensorFlow decodes it (:func:`decode_jpeg_as_tensorflow`);
    with ``jpeg_decoder="accurate"``, and every other format, PIL decodes it. PIL's own conversion
    to RGB drops an alpha channel and repeats grey, as ``tf.image.decode_image(channels=3)`` does;
    16-bit greys it would clip at 255, so those keep their high byte first, as TensorFlow scales
    16 bits to 8; a palette with transparency goes through RGBA, as PIL asks (it warns otherwise),
    to the same colours.
    """
    if raw[:3] == _JPEG_SIGNATURE and jpeg_decoder_in_use(jpeg_decoder) == "keras":
        return decode_jpeg_as_tensorflow(path, raw, mode)
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(raw)) as pil_image:  # an animated GIF opens at its first frame
            if pil_image.mode == "I" or pil_image.mode.startswith("I;16"):
                grey = np.asarray(pil_image, dtype=np.int64) >> 8  # 16-bit grey: its high byte
                pil_image = Image.fromarray(grey.clip(0, 255).astype(np.uint8))
            if pil_image.mode == "P" and "transparency" in pil_image.info:
                pil_image = pil_image.convert("RGBA")  # PIL's advice for a palette with alpha; RGB then drops it
            array = np.asarray(pil_image.convert(mode))
    except Exception as error:
        if isinstance(error, UnidentifiedImageError):  # its message names an in-memory BytesIO, not the file
            raise _undecodable(path, "not an image format PIL knows") from None
        raise _undecodable(path, error) from None
    return _to_chw(array)


def decode_jpeg_as_tensorflow(path: str, raw: bytes, mode: str) -> torch.Tensor:
    """A JPEG file's pixels as ``tf.io.decode_jpeg(channels=3)`` (``mode`` "RGB") or ``channels=1``
    ("L") gives them: libjpeg-turbo (through simplejpeg) with TensorFlow's defaults, the fast
    integer inverse DCT (``dct_method=""``) and fancy upsampling.

    As in TensorFlow: libjpeg converts grey to RGB and colour to grey (its Y channel); a CMYK or
    YCCK file is decoded to CMYK and turned into RGB by TensorFlow's own integer formula; a
    truncated file is refused, while libjpeg's warnings (stray bytes before a marker) are not.
    """
    simplejpeg = _simplejpeg()
    try:
        cmyk = simplejpeg.decode_jpeg_header(raw)[2] in ("CMYK", "YCCK")
        array = _libjpeg_turbo(simplejpeg, raw, "CMYK" if cmyk else {"RGB": "RGB", "L": "GRAY"}[mode])
    except ValueError as error:
        raise _undecodable(path, error) from None
    if cmyk:
        array = _cmyk_to_rgb(array, _has_adobe_marker(raw))
        if mode == "L":  # TensorFlow refuses CMYK to grey ("Unsupported color conversion request"): PIL's grey
            from PIL import Image

            array = Image.fromarray(array).convert("L")
    return _to_chw(array)


def _libjpeg_turbo(simplejpeg, raw: bytes, colorspace: str):
    options = {"colorspace": colorspace, "fastdct": True, "fastupsample": False}
    try:
        return simplejpeg.decode_jpeg(raw, strict=True, **options)
    except ValueError as error:
        if "Premature end" in str(error):  # a truncated file: TensorFlow refuses it too
            raise
        return simplejpeg.decode_jpeg(raw, strict=False, **options)  # a warning only: TensorFlow decodes it


def _cmyk_to_rgb(cmyk, adobe: bool):
    """TensorFlow's CMYK to RGB (``jpeg_mem.cc``), in integers: Adobe's files store CMYK inverted."""
    import numpy as np

    c, m, y, k = (cmyk[..., i].astype(np.int32) for i in range(4))
    if adobe:
        rgb = (k * c // 255, k * m // 255, k * y // 255)
    else:
        rgb = ((255 - k) * (255 - c) // 255, (255 - k) * (255 - m) // 255, (255 - k) * (255 - y) // 255)
    return np.stack(rgb, axis=-1).astype(np.uint8)


def _has_adobe_marker(raw: bytes) -> bool:
    """Whether the file has Adobe's APP14 marker (libjpeg's ``saw_Adobe_marker``), read by PIL from the header."""
    from PIL import Image

    with Image.open(io.BytesIO(raw)) as header:
        return "adobe" in header.info


def _to_chw(array) -> torch.Tensor:
    import numpy as np

    tensor = torch.from_numpy(np.array(array, dtype=np.uint8))  # a copy: writable, and PIL's image is freed
    return tensor[None] if tensor.ndim == 2 else tensor.permute(2, 0, 1).contiguous()  # HWC -> CHW


def _undecodable(path: str, error: Exception | str) -> UserError:
    reason = error if isinstance(error, str) else " ".join(str(error).split())[:80] or type(error).__name__
    return UserError(
        f"cannot decode image {path} ({reason}): the file is corrupt or not an image; delete or replace it"
    )


# --------------------------------------------------------------------------- a learner's own images


def load_image(
    path: str | os.PathLike,
    image_size: tuple[int, int],
    channels: int = 3,
    crop_to_aspect_ratio: bool = False,
    pad_to_aspect_ratio: bool = False,
    jpeg_decoder: str = "keras",
) -> torch.Tensor:
    """One image file as a ``uint8`` tensor of shape (channels, height, width), decoded and resized
    as training decoded and resized its images.

    ``image_size`` is (height, width), like Keras's ``target_size``. PNG, JPEG, BMP, GIF and
    whatever else PIL reads work, of any size; a JPEG reads as TensorFlow reads it unless
    ``jpeg_decoder="accurate"``. A file that cannot be read or decoded raises a UserError that names it.
    """
    if channels not in (1, 3):
        raise UserError(f"models with {channels} input channels cannot read image files: use 3 (RGB) or 1 (grayscale)")
    path_text = str(Path(path))
    image = decode_image(path_text, read_bytes(path_text), "RGB" if channels == 3 else "L", jpeg_decoder)
    return resize(image, image_size, crop_to_aspect_ratio, pad_to_aspect_ratio).contiguous()


def load_images(
    paths: Sequence[str | os.PathLike], image_size: tuple[int, int], channels: int = 3, **options
) -> torch.Tensor:
    """Several image files as one ``uint8`` (N, channels, height, width) batch; ``options``
    (the aspect-ratio rule, ``jpeg_decoder``) as :func:`load_image`."""
    if not paths:
        raise UserError("no image files given: pass one or more image paths")
    return torch.stack([load_image(path, image_size, channels, **options) for path in paths])


def to_model_input(images: torch.Tensor, normalisation: dict) -> torch.Tensor:
    """``uint8`` images -> float32 model inputs, scaled as the checkpoint's training data was.

    ``normalisation`` is a checkpoint's ``{"scale", "mean", "std"}``: pixels are scaled by
    ``scale`` (the lesson's ``/ 255.0``, done by ``as_float`` as ``fit`` and ``evaluate`` do it),
    then, if given, per-channel ``mean`` and ``std`` are applied.
    """
    inputs = as_float(images, layout=torch.contiguous_format)
    scale = float(normalisation.get("scale", 1 / 255.0))
    if scale != 1 / 255.0:  # not the lesson's scale: the [0, 1] values scaled to it
        inputs = inputs * (scale * 255.0)
    mean, std = normalisation.get("mean"), normalisation.get("std")
    if mean is not None:
        inputs = inputs - torch.as_tensor(mean, dtype=torch.float32).reshape(1, -1, 1, 1)
    if std is not None:
        inputs = inputs / torch.as_tensor(std, dtype=torch.float32).reshape(1, -1, 1, 1)
    return inputs
