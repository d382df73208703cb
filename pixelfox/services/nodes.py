"""Nodes: which are live (a recent heartbeat in the database, not marked lost), the node
list, and marking a dead node lost."""

from __future__ import annotations

from datetime import datetime, timedelta

from flask import g, has_request_context
from sqlalchemy.exc import IntegrityError

from pixelfox.extensions import db
from pixelfox.models import Image, ImageCopy, Node, StoragePool
from pixelfox.models.base import utcnow
from pixelfox.services import settings


class NodeError(ValueError):
    pass


def touch(node_id: str, now: datetime | None = None) -> None:
    """Record a heartbeat of `node_id` (the database is the truth: a Redis that lost its data
    must not make every node look down)."""
    now = now or utcnow()
    updated = db.session.execute(
        db.update(Node).where(Node.node_id == node_id).values(last_heartbeat_at=now)
    ).rowcount
    if not updated:
        db.session.add(Node(node_id=node_id, last_heartbeat_at=now))
        try:
            db.session.flush()
        except IntegrityError:  # another process added it just now
            db.session.rollback()
            return touch(node_id, now)
    db.session.commit()


def known() -> list[str]:
    """Every node: those that sent a heartbeat and those that hold pools."""
    ids = set(db.session.execute(db.select(Node.node_id)).scalars())
    ids |= set(db.session.execute(db.select(StoragePool.node_id).distinct()).scalars())
    return sorted(ids)


def rows() -> dict[str, Node]:
    return {n.node_id: n for n in db.session.execute(db.select(Node)).scalars()}


def live(now: datetime | None = None) -> set[str]:
    """Nodes whose heartbeat is younger than node_down_after_seconds and that were not marked
    lost (cached for the current request)."""
    if now is None and has_request_context() and "pixelfox_live_nodes" in g:
        return g.pixelfox_live_nodes
    since = (now or utcnow()) - timedelta(seconds=int(settings.get("node_down_after_seconds")))
    ids = set(
        db.session.execute(
            db.select(Node.node_id).where(Node.lost_at.is_(None), Node.last_heartbeat_at >= since)
        ).scalars()
    )
    if now is None and has_request_context():
        g.pixelfox_live_nodes = ids
    return ids


def lost() -> set[str]:
    return set(
        db.session.execute(db.select(Node.node_id).where(Node.lost_at.is_not(None))).scalars()
    )


def lost_pool_ids() -> list[int]:
    """Pools whose bytes were on lost nodes (a bucket is never lost with a node)."""
    return list(
        db.session.execute(
            db.select(StoragePool.id)
            .join(Node, Node.node_id == StoragePool.node_id)
            .where(Node.lost_at.is_not(None), StoragePool.storage_type != "s3")
        ).scalars()
    )


def lost_preflight(node_id: str) -> dict:
    """What marking `node_id` lost does: images whose primary is there, and how many of them
    (or of any image with a copy there) would be left without any verified copy elsewhere."""
    here = db.select(StoragePool.id).where(StoragePool.node_id == node_id)
    elsewhere = (
        db.select(ImageCopy.image_id)
        .join(StoragePool, StoragePool.id == ImageCopy.pool_id)
        .join(Node, Node.node_id == StoragePool.node_id, isouter=True)
        .where(
            ImageCopy.status == "verified",
            ((StoragePool.node_id != node_id) & Node.lost_at.is_(None))
            | (StoragePool.storage_type == "s3"),
        )
    )
    here = here.where(StoragePool.storage_type != "s3")  # buckets are not lost with a node
    primary_here = db.session.execute(
        db.select(db.func.count(Image.id)).where(
            Image.storage_pool_id.in_(here), Image.deleted_at.is_(None)
        )
    ).scalar_one()
    stranded = db.session.execute(
        db.select(db.func.count(db.distinct(Image.id)))
        .join(ImageCopy, ImageCopy.image_id == Image.id)
        .where(
            ImageCopy.pool_id.in_(here),
            Image.deleted_at.is_(None),
            Image.id.not_in(elsewhere),
        )
    ).scalar_one()
    return {"node_id": node_id, "primary_here": primary_here, "without_copy": stranded}


def mark_lost(node_id: str, confirm: str, here: str) -> dict:
    """An admin says `node_id` is gone for good: its copies are never linked again, its pools
    are retired (inactive, no uploads), and repair promotes replicas and restores the
    replication factor. Its object-storage pools are not lost — their jobs move to node
    `here` (the admin's). Bringing the machine back means adding its pools anew."""
    if confirm != node_id:
        raise NodeError(f"Type the node id ({node_id}) to confirm.")
    if node_id not in known():
        raise NodeError(f"There is no node {node_id}.")
    node = db.session.get(Node, node_id)
    if node is None:
        node = Node(node_id=node_id)
        db.session.add(node)
    if node.lost_at is None:
        node.lost_at = utcnow()
    db.session.execute(
        db.update(StoragePool)
        .where(StoragePool.node_id == node_id, StoragePool.storage_type != "s3")
        .values(is_active=False, accepts_uploads=False)
    )
    if here != node_id:
        rehome_buckets(node_id, here)
    db.session.commit()
    return lost_preflight(node_id)


def rehome_buckets(node_id: str, here: str) -> None:
    """Run the jobs of `node_id`'s object-storage pools on node `here` (uploads reach them
    through its upload endpoint); the caller commits."""
    url = db.session.execute(
        db.select(StoragePool.upload_api_url)
        .where(
            StoragePool.node_id == here,
            StoragePool.storage_type != "s3",
            StoragePool.upload_api_url.is_not(None),
        )
        .limit(1)
    ).scalar_one_or_none()
    db.session.execute(
        db.update(StoragePool)
        .where(StoragePool.node_id == node_id, StoragePool.storage_type == "s3")
        .values(node_id=here, upload_api_url=url)
    )
