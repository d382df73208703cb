"""Typed SQLAlchemy models (SPEC §3)."""

from pixelfox.models.cluster import ImageCopy, Node
from pixelfox.models.image import Image, ImageVariant, ViewFlush
from pixelfox.models.move import PoolMove, PoolMoveItem
from pixelfox.models.regen import RegenRun
from pixelfox.models.setting import Setting
from pixelfox.models.storage import StoragePool
from pixelfox.models.tiering import TieringRun
from pixelfox.models.user import User

__all__ = [
    "Image",
    "ImageCopy",
    "ImageVariant",
    "Node",
    "PoolMove",
    "PoolMoveItem",
    "RegenRun",
    "Setting",
    "StoragePool",
    "TieringRun",
    "User",
    "ViewFlush",
]
