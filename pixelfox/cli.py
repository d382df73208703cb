"""`flask --app wsgi …` commands: users, scheduler, backup, repair, scrub, tiering."""

from __future__ import annotations

import logging
from pathlib import Path

import click
from flask import Flask, current_app
from flask.cli import AppGroup, with_appcontext

from pixelfox import queues
from pixelfox.extensions import db
from pixelfox.jobs import schedule
from pixelfox.models import User
from pixelfox.models.base import utcnow
from pixelfox.services import accounts, backup, pools, replicas, scrub, tiering

users_cli = AppGroup("users", help="Manage user accounts.")


@users_cli.command("create")
@click.option("--username", required=True)
@click.option("--email", required=True)
@click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True)
@click.option("--admin", is_flag=True, help="Give the user the admin role.")
def users_create(username: str, email: str, password: str, admin: bool) -> None:
    """Create a user (active at once)."""
    try:
        user = accounts.create_user(username, email, password, "admin" if admin else "user")
    except accounts.AccountError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"created {user.role} {user.username} (id {user.id})")


@users_cli.command("list")
def users_list() -> None:
    """List users."""
    rows = db.session.execute(db.select(User).order_by(User.id)).scalars()
    for u in rows:
        click.echo(f"{u.id}\t{u.username}\t{u.email}\t{u.role}\t{u.status}")


@users_cli.command("set-password")
@click.option("--username", required=True, help="Username or e-mail.")
@click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True)
def users_set_password(username: str, password: str) -> None:
    """Set a user's password."""
    user = accounts.find_login(username)
    if user is None:
        raise click.ClickException(f"no user {username!r}")
    try:
        accounts.set_password(user, password)
    except accounts.AccountError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"password set for {user.username}")


@click.command("scheduler")
@with_appcontext
@click.option("--sync-only", is_flag=True, help="Register the periodic jobs, then exit.")
@click.option("--interval", default=5, show_default=True, help="Seconds between checks.")
def scheduler_command(sync_only: bool, interval: int) -> None:
    """Register the periodic jobs idempotently (fixed ids), then run rq-scheduler."""
    pools.ensure_default_pool()
    node = current_app.config["NODE_ID"]
    scheduler = queues.periodic_scheduler(node, interval)
    every = current_app.config["HEARTBEAT_SECONDS"]
    result = schedule.sync(
        scheduler, schedule.definitions(node, pools.node_ids(active_only=True), every)
    )
    click.echo(
        f"periodic jobs: {len(result['added'])} added, {len(result['kept'])} kept, "
        f"{len(result['removed'])} removed"
    )
    if sync_only:
        return
    logging.getLogger("rq_scheduler").setLevel(logging.INFO)

    def wanted() -> list:
        try:
            return schedule.definitions(node, pools.node_ids(active_only=True), every)
        finally:
            db.session.remove()  # no long transaction: the next sync reads fresh rows

    schedule.run(scheduler, wanted, on_error=db.session.remove)


@click.command("backup")
@click.option(
    "--output", required=True, type=click.Path(file_okay=False), help="A new, empty directory."
)
@with_appcontext
def backup_command(output: str) -> None:
    """Dump the database consistently and list what else to keep per node."""
    try:
        manifest = backup.backup(Path(output))
    except backup.BackupError as exc:
        raise click.ClickException(str(exc)) from exc
    rows = sum(manifest["tables"].values())
    click.echo(
        f"backup written to {output}: {rows} rows in {len(manifest['tables'])} tables, "
        f"schema {manifest['alembic_revision']}"
    )
    click.echo("Also keep (not in the dump):")
    for node, paths in manifest["also_keep"]["per_node_files"].items():
        for path in paths:
            click.echo(f"  node {node}: {path}")
    for item in manifest["also_keep"]["secrets"] + manifest["also_keep"]["config"]:
        click.echo(f"  {item}")


@click.command("restore")
@click.option("--input", "source", required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--yes", is_flag=True, help="Confirm writing into this database.")
@with_appcontext
def restore_command(source: str, yes: bool) -> None:
    """Restore a backup into an empty, migrated database."""
    if not yes:
        raise click.ClickException("Pass --yes to restore into this database.")
    try:
        restored = backup.restore(Path(source))
    except backup.BackupError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"restored {sum(restored.values())} rows into {len(restored)} tables")


@click.command("repair")
@with_appcontext
def repair_command() -> None:
    """One repair pass now: promote replicas off lost nodes, queue the missing copies."""
    result = replicas.repair_pass()
    d = result.pop("durability")
    click.echo(f"repair: {result}")
    click.echo(
        f"{d['images']} images: {d['fully_replicated']} fully replicated, "
        f"{d['under_replicated']} under-replicated, {d['without_copy']} without a copy, "
        f"{d['repairing']} being copied (replication factor {d['replication_factor']})"
    )


@click.command("scrub")
@click.option("--rate", type=int, default=0, show_default=True, help="MB/s (0 = unlimited).")
@with_appcontext
def scrub_command(rate: int) -> None:
    """One whole scrub pass over this node's copies now."""
    result = scrub.run(budget_seconds=None, rate_mb=rate)
    click.echo(f"scrub on {current_app.config['NODE_ID']}: {result}")


@click.command("tiering")
@click.option("--dry-run", is_flag=True, help="Show what would move; move nothing.")
@click.option(
    "--now",
    "as_of",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    default=None,
    help="Apply the rules as if today were this day (YYYY-MM-DD).",
)
@with_appcontext
def tiering_command(dry_run: bool, as_of) -> None:
    """One tiering pass now (also when tiering_enabled is off): start the moves of images
    not viewed for long into colder pools; with --dry-run only show them."""
    day = as_of.date() if as_of else None
    if dry_run:
        found = tiering.plan(day or utcnow().date())
        for row in found.rows():
            click.echo(
                f"{row['source']} ({row['source_tier']}) → {row['target']} "
                f"({row['target_tier']}): {row['images']} images, {row['bytes']} bytes"
            )
        for note in found.notes:
            click.echo(f"note: {note}")
        click.echo(f"dry run as of {found.as_of}: {found.images} images, {found.bytes} bytes")
        return
    run = tiering.run(day, trigger="cli")
    for note in (run.notes or "").splitlines():
        click.echo(f"note: {note}")
    click.echo(
        f"tiering run {run.id} as of {run.as_of}: {run.images} images, {run.bytes} bytes "
        f"in {run.moves} moves (see /admin/moves)"
    )


def init_app(app: Flask) -> None:
    app.cli.add_command(tiering_command)
    app.cli.add_command(repair_command)
    app.cli.add_command(scrub_command)
    app.cli.add_command(users_cli)
    app.cli.add_command(scheduler_command)
    app.cli.add_command(backup_command)
    app.cli.add_command(restore_command)
