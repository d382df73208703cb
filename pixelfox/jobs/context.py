"""App context for jobs: the plain `rq worker` CLI imports our functions with no Flask app,
so each job makes sure one exists (created once per process: once per job under the plain CLI,
whose work horses are fresh forks; once per worker with `-w pixelfox.jobs.worker.Worker`,
which creates it before forking)."""

from __future__ import annotations

import functools
import logging
import os

from flask import has_app_context
from rq import get_current_job

from pixelfox import create_app
from pixelfox.extensions import db
from pixelfox.services import settings

_app = None


def job_app():
    global _app
    if _app is None:
        _app = create_app()
    return _app


def _forget_parent_connections() -> None:
    """In a forked work horse: never reuse the parent's database connections (SQLAlchemy's
    advice for forks); Redis clients notice the fork themselves."""
    if _app is not None:
        with _app.app_context():
            db.engine.dispose(close=False)


os.register_at_fork(after_in_child=_forget_parent_connections)


def get_job_logger(name: str) -> logging.LoggerAdapter:
    """A logger that puts the RQ job id in every line."""
    job = get_current_job()
    return logging.LoggerAdapter(logging.getLogger(name), {"job_id": job.id if job else "-"})


def with_app_context(func):
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        if not has_app_context():
            with job_app().app_context():
                return _run(func, args, kwargs)
        return _run(func, args, kwargs)

    return wrapper


def _run(func, args, kwargs):
    """Each job gets a fresh DB session: a worker that keeps one app context for many jobs
    must not read an old transaction's snapshot (MySQL REPEATABLE READ)."""
    db.session.remove()
    settings.forget()  # a worker keeping one app context must not keep old settings
    try:
        return func(*args, **kwargs)
    finally:
        db.session.remove()
        settings.forget()
