"""Image files: a cheap header check for validation, and loading to 8-bit RGB for training.

``probe_image`` reads the header (size, format) and runs PIL's ``verify()``; it does not decode
pixels. ``load_image`` decodes fully and converts every mode to RGB:

* L, 1, YCbCr, HSV, LAB, CMYK (naive PIL formula, or the embedded ICC profile when there is one)
  -> PIL's conversion;
* RGBA, LA, PA, RGBa, and P/L/RGB with a ``transparency`` entry -> composited on white;
* 16-bit (I;16, I;16B, I;16L) and 32-bit integer (I, holding 16-bit data as PIL does for
  16-bit PNG/TIFF) -> clipped to 0..65535 and scaled by 255/65535 (rounded), never clipped at 255;
* F (floating point) and La are refused: there is no unambiguous 8-bit reading.

EXIF orientation is NOT applied: boxes in datasets refer to the stored pixel grid, which is also
what the header size reports. Truncated files and files over ``max_pixels`` are refused with an
:class:`ImageError` naming the file; nothing is ever substituted. A truncated file is refused as
long as PIL's global ``ImageFile.LOAD_TRUNCATED_IMAGES`` is False (its default).
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image

from .errors import ImageError

DEFAULT_MAX_PIXELS = 64 * 1024 * 1024  # 67M pixels, about 8192 x 8192
_SIXTEEN_BIT = ("I;16", "I;16B", "I;16L", "I;16N", "I")
_ALPHA = ("RGBA", "LA", "PA", "RGBa")
NO_RGB_READING = ("F", "La")  # 32-bit float pixels; luminance with premultiplied alpha


def _open(path: Path) -> Image.Image:
    try:
        exists, is_file = path.exists(), path.is_file()
    except (OSError, ValueError) as e:  # a name too long for the file system, an embedded NUL, ...
        raise ImageError(f"{str(path)[:200]!r}: not a usable path ({type(e).__name__}: {str(e)[:200]})") from e
    if not exists:
        raise ImageError(f"{path}: image file not found")
    if not is_file:
        raise ImageError(f"{path}: not a file")
    try:
        with warnings.catch_warnings():  # our own max_pixels check replaces PIL's warning
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return Image.open(path)
    except Image.DecompressionBombError as e:
        raise ImageError(f"{path}: refused as a decompression bomb ({e})") from e
    except Exception as e:  # UnidentifiedImageError, OSError, SyntaxError, struct.error, ...
        raise ImageError(f"{path}: not a readable image ({type(e).__name__}: {e})") from e


def _check_pixels(path: Path, size: tuple[int, int], max_pixels: int | None) -> None:
    w, h = size
    if w <= 0 or h <= 0:
        raise ImageError(f"{path}: image has an empty size {w}x{h}")
    if max_pixels is not None and w * h > max_pixels:
        raise ImageError(f"{path}: {w}x{h} = {w * h} pixels exceeds max_pixels={max_pixels} (decompression bomb?)")


CHECKED_WITHOUT_DECODING = ("PNG", "JPEG")


def probe_image(path, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> tuple[int, int]:
    """Return ``(width, height)`` from the header after ``verify()``; raise :class:`ImageError`.

    Cheap for PNG and JPEG, the common formats: no pixel decoding. ``verify()`` checks chunk CRCs and completeness
    for PNG; for JPEG it checks little, so a JPEG must also end with its end-of-image marker (FF D9), which a file
    cut short lacks. Every other format (TIFF, BMP, GIF, WebP, PPM, ...) is decoded: ``verify()`` would not notice
    one cut short.
    """
    path = Path(path)
    im = _open(path)
    with im:
        size = im.size
        image_format = im.format
        _check_pixels(path, size, max_pixels)
        if im.mode in NO_RGB_READING:  # from the header: load_image would refuse it at the row's first step
            raise ImageError(f"{path}: image mode {im.mode} has no unambiguous 8-bit RGB reading; convert it first")
        try:
            im.verify()
        except Exception as e:
            raise ImageError(f"{path}: corrupt image ({type(e).__name__}: {e})") from e
    if image_format == "JPEG" and not _ends_with_jpeg_marker(path):
        raise ImageError(f"{path}: truncated JPEG (no end-of-image marker FF D9 at the end of the file)")
    if image_format not in CHECKED_WITHOUT_DECODING:  # verify() checks nothing for TIFF, BMP, GIF, PPM, ...
        with _open(path) as im:
            _decode(path, im)
    return size


def _decode(path: Path, im: Image.Image) -> None:
    """Decode the pixels of ``im`` (opened from ``path``); raise :class:`ImageError` naming the file."""
    try:
        im.load()
    except Exception as e:
        raise ImageError(f"{path}: cannot decode image, truncated or corrupt ({type(e).__name__}: {e})") from e


def exif_orientation(path) -> int:
    """The EXIF orientation tag of an image file (1, "as stored", when it has none or cannot be read): cheap, the
    header only. Not applied anywhere (see the module docstring); the data layer warns about rotated files."""
    try:
        with Image.open(path) as im:
            orientation = im.getexif().get(0x0112, 1)
    except Exception:  # the image checks report unreadable files; this is only a hint
        return 1
    return orientation if isinstance(orientation, int) else 1


def _ends_with_jpeg_marker(path: Path, tail_bytes: int = 64) -> bool:
    """True when the end-of-image marker stands in the file's last bytes (some writers pad after it)."""
    with open(path, "rb") as handle:
        handle.seek(0, 2)
        handle.seek(max(0, handle.tell() - tail_bytes))
        return b"\xff\xd9" in handle.read()


def _sixteen_bit_to_rgb(im: Image.Image) -> Image.Image:
    arr = np.clip(np.asarray(im).astype(np.int64), 0, 65535)
    arr8 = ((arr * 255 + 32767) // 65535).astype(np.uint8)
    return Image.fromarray(arr8, "L").convert("RGB")


def _cmyk_to_rgb(im: Image.Image) -> Image.Image:
    icc = im.info.get("icc_profile")
    if icc:
        try:
            from PIL import ImageCms

            src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            return ImageCms.profileToProfile(im, src, ImageCms.createProfile("sRGB"), outputMode="RGB")
        except Exception:  # no littlecms, or a broken profile: fall back to PIL's formula
            pass
    return im.convert("RGB")


def to_rgb(im: Image.Image, background: tuple[int, int, int] = (255, 255, 255)) -> Image.Image:
    """Convert a decoded image of any supported mode to a new 8-bit RGB image (see module docstring)."""
    mode = im.mode
    if mode == "RGB" and "transparency" not in im.info:
        return im.copy()
    if mode in _SIXTEEN_BIT:
        return _sixteen_bit_to_rgb(im)
    if mode in NO_RGB_READING:
        raise ValueError(f"image mode {mode} has no unambiguous 8-bit RGB reading; convert it first")
    if mode in _ALPHA or "transparency" in im.info:
        rgba = im.convert("RGBA")
        base = Image.new("RGBA", im.size, (*background, 255))
        return Image.alpha_composite(base, rgba).convert("RGB")
    if mode == "CMYK":
        return _cmyk_to_rgb(im)
    return im.convert("RGB")


def load_image(path, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Open, fully decode and convert ``path`` to RGB. Raises :class:`ImageError` naming the file."""
    path = Path(path)
    im = _open(path)
    with im:
        _check_pixels(path, im.size, max_pixels)
        _decode(path, im)
        try:
            return to_rgb(im)
        except Exception as e:
            raise ImageError(f"{path}: cannot convert mode {im.mode} to RGB: {e}") from e


def load_row_images(paths, source: str) -> list[Image.Image]:
    """The images of one row, each as :func:`load_image` gives it; an :class:`ImageError` names the row as
    ``file:line: image: ...``, so a file that broke after validation is found in the data."""
    images = []
    for path in paths:
        try:
            images.append(load_image(path))
        except ImageError as e:
            raise ImageError(f"{source}: image: {e}") from e
    return images


def image_root_problem(image_root: str | None) -> str | None:
    """What is wrong with an ``image_root`` option (None: nothing): it must be a folder, since every relative image
    path is read from it (a mistyped one gave one "image file not found" per row)."""
    if image_root is None or Path(image_root).is_dir():
        return None
    kind = "a file, not a folder" if Path(image_root).exists() else "no such folder"
    return f"image_root {image_root}: {kind} (the JSONL files' relative image paths are read from it)"
