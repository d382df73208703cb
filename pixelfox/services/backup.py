"""Consistent database backup and restore, plus the list of what else each node must keep.

The dump is read inside one transaction (MySQL/MariaDB: START TRANSACTION WITH CONSISTENT
SNAPSHOT; SQLite: one read transaction), one JSON-lines file per table, so it restores into
either database. Restore goes into an empty database migrated to the same revision.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, date, datetime
from pathlib import Path

from flask import current_app
from sqlalchemy import text

from pixelfox.extensions import db
from pixelfox.models import StoragePool

FORMAT = 1
BATCH = 1000


class BackupError(RuntimeError):
    pass


def _encode(value):
    if isinstance(value, datetime | date):
        return {"$dt": value.isoformat()}
    return value


def _decode(value):
    if isinstance(value, dict) and "$dt" in value:
        return datetime.fromisoformat(value["$dt"])
    return value


def tables():
    """Every table of the schema (alembic's bookkeeping excluded), parents first."""
    return [t for t in db.metadata.sorted_tables if t.name != "alembic_version"]


def backup(output: Path) -> dict:
    output.mkdir(parents=True, exist_ok=True)
    if any(output.iterdir()):
        raise BackupError(f"{output} is not empty; choose a new directory.")
    (output / "db").mkdir()
    counts = {}
    with db.engine.connect() as conn:
        if conn.dialect.name in ("mysql", "mariadb"):
            conn.exec_driver_sql("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            conn.exec_driver_sql("START TRANSACTION WITH CONSISTENT SNAPSHOT")
        else:
            conn.begin()
        revision = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
        for table in tables():
            n = 0
            with open(output / "db" / f"{table.name}.jsonl", "w", encoding="utf-8") as fh:
                for row in conn.execute(table.select().order_by(*table.primary_key.columns)):
                    fh.write(json.dumps({k: _encode(v) for k, v in row._mapping.items()}))
                    fh.write("\n")
                    n += 1
            counts[table.name] = n
        pools = conn.execute(StoragePool.__table__.select()).mappings().all()
        conn.rollback()
    manifest = {
        "format": FORMAT,
        "created_at": datetime.now(UTC).isoformat(),
        "alembic_revision": revision,
        "dialect": db.engine.dialect.name,
        "node_id": current_app.config["NODE_ID"],
        "tables": counts,
        "also_keep": also_keep(pools),
    }
    (output / "manifest.json").write_text(json.dumps(manifest, indent=2))
    for path in [output / "manifest.json", *(output / "db").iterdir()]:
        with open(path, "rb") as fh:
            os.fsync(fh.fileno())
    return manifest


def also_keep(pools) -> dict:
    """What a database dump does not hold, node by node."""
    nodes: dict[str, list[str]] = {}
    buckets = []
    for p in pools:
        if p.get("storage_type") == "s3":
            buckets.append(f"{p['base_path']}  (pool {p['name']}: the store keeps these)")
            continue
        nodes.setdefault(p["node_id"], []).append(
            f"{p['base_path']}  (pool {p['name']}: original/ and variants/)"
        )
    return {
        "per_node_files": nodes,
        "buckets": buckets,
        "secrets": [
            "SECRET_KEY (also decrypts the S3 secret keys of object-storage pools in this dump)",
            "UPLOAD_TOKEN_SECRET",
            "REPLICATION_SECRET (identical on every node; keep them with the backup, encrypted)",
        ],
        "config": [".env of every node (NODE_ID, UPLOADS_DIR, URLs)"],
        "not_needed": [
            "Redis (queues, heartbeats and rate limits rebuild themselves; pool "
            "moves are journalled in the database)"
        ],
    }


def restore(source: Path) -> dict:
    manifest_path = source / "manifest.json"
    if not manifest_path.exists():
        raise BackupError(f"{source} has no manifest.json; is it a PixelFox backup?")
    manifest = json.loads(manifest_path.read_text())
    if manifest.get("format") != FORMAT:
        raise BackupError(f"Unknown backup format {manifest.get('format')!r}.")
    with db.engine.begin() as conn:
        try:
            revision = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
        except Exception as exc:
            raise BackupError(
                "The database is not migrated; run `flask db upgrade` first."
            ) from exc
        if revision != manifest["alembic_revision"]:
            raise BackupError(
                f"The backup is at schema revision {manifest['alembic_revision']}, the database "
                f"at {revision}. Migrate an empty database to the backup's revision "
                f"(`flask db upgrade {manifest['alembic_revision']}`), restore, then upgrade."
            )
        for table in tables():
            if conn.execute(table.select().limit(1)).first() is not None:
                raise BackupError(
                    f"Table {table.name} is not empty; restore needs an empty database."
                )
        restored = {}
        for table in tables():
            path = source / "db" / f"{table.name}.jsonl"
            rows, n = [], 0
            if path.exists():
                with open(path, encoding="utf-8") as fh:
                    for line in fh:
                        rows.append({k: _decode(v) for k, v in json.loads(line).items()})
                        if len(rows) >= BATCH:
                            conn.execute(table.insert(), rows)
                            n += len(rows)
                            rows = []
            if rows:
                conn.execute(table.insert(), rows)
                n += len(rows)
            expected = manifest["tables"].get(table.name, 0)
            if n != expected:
                raise BackupError(f"{table.name}: {n} rows read, manifest says {expected}.")
            restored[table.name] = n
    return restored
