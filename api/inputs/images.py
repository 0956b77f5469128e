"""Image inputs are checked at the door: a corrupt screenshot is a 422, not a failed task."""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError

from mcp.errors import InvalidImage

FORMATS = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp"}
# Phones top out around 1440x3200; anything far beyond is refused before it is decoded.
MAX_PIXELS = 40_000_000


@dataclass(frozen=True)
class ImageFacts:
    content_type: str
    width: int
    height: int


def check_image(data: bytes, *, complete: bool = True) -> ImageFacts:
    """The image's type and size; `complete` also checks every chunk (not only the header)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=list(FORMATS))
            facts = ImageFacts(FORMATS[image.format or ""], image.width, image.height)
            if facts.width * facts.height > MAX_PIXELS:
                raise InvalidImage(
                    f"the image has {facts.width}x{facts.height} pixels, more than {MAX_PIXELS}",
                    {"width": facts.width, "height": facts.height, "max_pixels": MAX_PIXELS},
                )
            if complete and image.format == "PNG":
                image.verify()  # every chunk's CRC, without decompressing the pixels
            elif complete:
                image.load()
    except InvalidImage:
        raise
    except UnidentifiedImageError as exc:  # its text names a BytesIO object: say what it means
        raise InvalidImage(
            "the screenshot is not a PNG, JPEG or WebP image (its format is not recognised)",
            {"reason": "unrecognised format"},
        ) from exc
    except Exception as exc:
        raise InvalidImage(
            f"the screenshot is not a readable PNG, JPEG or WebP image ({exc})",
            {"reason": str(exc)},
        ) from exc
    return facts
