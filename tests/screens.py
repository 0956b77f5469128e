"""Phone-sized screenshots for tests and benchmarks: 1080x2400 PNGs with a photo on screen."""

from __future__ import annotations

import io
from functools import lru_cache

import numpy as np
from PIL import Image

WIDTH, HEIGHT = 1080, 2400


@lru_cache(maxsize=4)
def phone_png(photo_rows: int = 860, seed: int = 7) -> bytes:
    """A screen of flat UI bands with a photo (incompressible noise) in its top `photo_rows`
    rows: about 2.8 MB as PNG with the default, as a real screenshot with a photo is."""
    pixels = np.zeros((HEIGHT, WIDTH, 3), dtype=np.uint8)
    pixels[:, :] = (245, 245, 247)
    for band in range(photo_rows, HEIGHT, 160):
        pixels[band : band + 120, 40 : WIDTH - 40] = (255, 255, 255)
        pixels[band + 30 : band + 90, 80:400] = (60, 60, 67)
    rng = np.random.default_rng(seed)
    pixels[:photo_rows] = rng.integers(0, 256, (photo_rows, WIDTH, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()
