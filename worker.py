"""Convenience worker: `python worker.py` listens on this node's queue (node-<NODE_ID>) with
PixelFox loaded once (pixelfox.jobs.worker.Worker) and RQ's scheduler on. The plain
`rq worker -w pixelfox.jobs.worker.Worker --url $REDIS_URL node-<id>` does the same.
"""

from __future__ import annotations

import sys

from rq import Queue

from pixelfox.jobs.context import job_app
from pixelfox.jobs.worker import Worker
from pixelfox.queues import queue_name


def main() -> int:
    app = job_app()
    if app.config["DISABLE_JOB_WORKERS"]:
        print("DISABLE_JOB_WORKERS=1: no worker on this node", file=sys.stderr)
        return 0
    with app.app_context():
        from pixelfox.extensions import get_redis
        from pixelfox.services import pools

        pools.ensure_default_pool()
        redis = get_redis()
        worker = Worker(
            [Queue(queue_name(app.config["NODE_ID"]), connection=redis)], connection=redis
        )
        worker.work(with_scheduler=True, burst="--burst" in sys.argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
