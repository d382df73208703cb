"""Load ImageMagick (through Wand) under PixelFox's restrictive policy.

Import this module only from workers: it is the single place that loads libMagick, and it
points MAGICK_CONFIGURE_PATH at our policy first, because ImageMagick reads it once at load.
"""

from __future__ import annotations

import os
from pathlib import Path

POLICY_DIR = Path(__file__).resolve().parent
os.environ["MAGICK_CONFIGURE_PATH"] = str(POLICY_DIR)

from wand.api import library  # noqa: E402
from wand.image import Image  # noqa: E402
from wand.resource import limits  # noqa: E402
from wand.version import MAGICK_VERSION_NUMBER  # noqa: E402

# Explicit limits on top of policy.xml, so a replaced system policy cannot loosen them.
limits["memory"] = 1024 * 1024 * 1024
limits["map"] = 2 * 1024 * 1024 * 1024
limits["width"] = 32000
limits["height"] = 32000
limits["area"] = 256_000_000
limits["thread"] = 2
# Frames per sequence. Wand names this limit only for ImageMagick 7; ImageMagick 6.9.10+ has it
# too, as ListLengthResource (11) in its ResourceType enum.
LIST_LENGTH = 1000
LIST_LENGTH_RESOURCE = 11 if MAGICK_VERSION_NUMBER < 0x700 else limits.limits.index("list_length")
library.MagickSetResourceLimit(LIST_LENGTH_RESOURCE, LIST_LENGTH)

__all__ = ["Image", "limits", "POLICY_DIR"]
