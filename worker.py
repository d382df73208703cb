"""Convenience worker: `python worker.py` listens on this node's queue (node-<NODE_ID>)
with the app context pushed once. The plain `rq worker --url $REDIS_URL node-<id>` works too.
"""

from __future__ import annotations

import sys

from rq import Queue, Worker

from pixelfox import create_app
from pixelfox.extensions import get_redis
from pixelfox.queues import queue_name


def main() -> int:
    app = create_app()
    if app.config["DISABLE_JOB_WORKERS"]:
        print("DISABLE_JOB_WORKERS=1: no worker on this node", file=sys.stderr)
        return 0
    with app.app_context():
        from pixelfox.services import pools

        pools.ensure_default_pool()
        import pixelfox.imaging.magick  # noqa: F401  (load ImageMagick under our policy once)

        redis = get_redis()
        queue = Queue(queue_name(app.config["NODE_ID"]), connection=redis)
        worker = Worker([queue], connection=redis)
        worker.work(with_scheduler=True, burst="--burst" in sys.argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
