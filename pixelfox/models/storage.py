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
    # storage_type = s3 (SPEC §10): the bucket. The secret key is stored encrypted with a key
    # derived from SECRET_KEY (services.objectstore), never in clear text.
    s3_endpoint: Mapped[str | None] = mapped_column(String(512))
    s3_bucket: Mapped[str | None] = mapped_column(String(255))
    s3_region: Mapped[str | None] = mapped_column(String(64))
    s3_prefix: Mapped[str | None] = mapped_column(String(255))
    s3_access_key: Mapped[str | None] = mapped_column(String(255))
    s3_secret_key_enc: Mapped[str | None] = mapped_column(Text)
    s3_addressing_style: Mapped[str | None] = mapped_column(String(16))

    @property
    def is_s3(self) -> bool:
        return self.storage_type == "s3"

    @property
    def failure_domain(self) -> str:
        """What a copy in this pool is lost with: its node's disks — or, in an object-storage
        pool, its bucket, which outlives every node (its node only runs its jobs)."""
        return f"s3:{self.id}" if self.is_s3 else self.node_id

    def reachable(self, live: set[str]) -> bool:
        """Can its copies be read now? A node's pool while the node is live; a bucket always."""
        return self.is_s3 or self.node_id in live

    def __repr__(self) -> str:
        return f"<StoragePool {self.name}@{self.node_id}>"
