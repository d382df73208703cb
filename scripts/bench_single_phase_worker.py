"""For scripts/bench_thumbnails.py only: PixelFox's worker as processing was before the two
phases — the thumbnail job makes every output (full-size WebP/AVIF and the clean original
included) before anything is shown."""

from __future__ import annotations

from pixelfox.jobs.worker import Worker as PixelfoxWorker


class Worker(PixelfoxWorker):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        from pixelfox.services import processing

        def inline(image, force=False):
            processing.finish(image.id, force)

        processing.queue_finish = inline
