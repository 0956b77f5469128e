"""Image inputs: what passes the door and what is refused with a clear 422."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from api.inputs.images import MAX_PIXELS, check_image
from mcp.errors import InvalidImage


def encoded(fmt: str, size: tuple[int, int] = (108, 240)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (30, 120, 200)).save(buffer, format=fmt)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("fmt", "content_type"), [("PNG", "image/png"), ("JPEG", "image/jpeg"), ("WEBP", "image/webp")]
)
def test_phone_screenshots_pass(fmt: str, content_type: str) -> None:
    facts = check_image(encoded(fmt))
    assert (facts.content_type, facts.width, facts.height) == (content_type, 108, 240)


@pytest.mark.parametrize(
    "data",
    [b"", b"not an image at all", encoded("PNG")[:200], encoded("GIF"), encoded("BMP")],
    ids=["empty", "text", "truncated-png", "gif", "bmp"],
)
def test_corrupt_or_other_data_is_refused(data: bytes) -> None:
    with pytest.raises(InvalidImage):
        check_image(data)


def test_flipped_bit_in_a_png_chunk_is_refused() -> None:
    data = bytearray(encoded("PNG"))
    data[len(data) // 2] ^= 0xFF
    with pytest.raises(InvalidImage):
        check_image(bytes(data))
    check_image(bytes(data), complete=False)  # the header alone still reads


def test_absurd_dimensions_are_refused_before_decoding() -> None:
    side = int(MAX_PIXELS**0.5) + 100
    with pytest.raises(InvalidImage, match="pixels"):
        check_image(encoded("PNG", (side, side)), complete=False)
