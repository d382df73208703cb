"""App context for jobs: the plain `rq worker` CLI imports our functions with no Flask app,
so each job makes sure one exists (created once per worker process)."""

from __future__ import annotations

import functools
import logging

from flask import has_app_context
from rq import get_current_job

from pixelfox import create_app
from pixelfox.extensions import db

_app = None


def job_app():
    global _app
    if _app is None:
        _app = create_app()
    return _app


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
    try:
        return func(*args, **kwargs)
    finally:
        db.session.remove()
