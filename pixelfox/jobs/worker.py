"""`rq worker -w pixelfox.jobs.worker.Worker node-<id>`: the plain RQ worker, with PixelFox
loaded once in the worker before it forks a work horse per job — the app, every job module
and ImageMagick under our policy — instead of in every work horse (about half a second per
job). `rq worker node-<id>` without `-w` works too, only slower per job."""

from __future__ import annotations

from rq import Worker as RQWorker


class Worker(RQWorker):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        import pixelfox.imaging.magick  # noqa: F401  (ImageMagick, under our policy)
        import pixelfox.jobs.images  # noqa: F401
        import pixelfox.jobs.moves  # noqa: F401
        import pixelfox.jobs.periodic  # noqa: F401
        import pixelfox.jobs.regen  # noqa: F401
        import pixelfox.jobs.replicas  # noqa: F401
        from pixelfox.jobs.context import job_app

        job_app()
