"""Storage pools: where image bytes live, and which node holds them."""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from pixelfox.extensions import db
from pixelfox.models.base import Timestamps

STORAGE_TYPES = ("local", "nfs", "s3")
TIERS = ("hot", "warm", "cold", "archive")


class StoragePool(Timestamps, db.Model):
    __tablename__ = "storage_pools"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    storage_type: Mapped[str] = mapped_column(String(16), default="local")
    storage_tier: Mapped[str] = mapped_column(String(16), default="hot")
    base_path: Mapped[str] = mapped_column(String(1024))
    public_base_url: Mapped[str | None] = mapped_column(String(512))
    upload_api_url: Mapped[str | None] = mapped_column(String(512))
    node_id: Mapped[str] = mapped_column(String(64), index=True)
    max_size: Mapped[int | None] = mapped_column(BigInteger)  # bytes; None = no limit
    used_size: Mapped[int] = mapped_column(BigInteger, default=0)
    priority: Mapped[int] = mapped_column(Integer, default=100)
    # Share of new uploads among pools of the same tier and priority (times the free
    # fraction); 0 = no new uploads.
    weight: Mapped[int] = mapped_column(Integer, default=100, server_default="100")
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    is_default: Mapped[bool] = mapped_column(Boolean, default=False)
    accepts_uploads: Mapped[bool] = mapped_column(Boolean, default=True)
    description: Mapped[str | None] = mapped_column(Text)

    def __repr__(self) -> str:
        return f"<StoragePool {self.name}@{self.node_id}>"
