# syntax=docker/dockerfile:1
# One image for every role: `web` (gunicorn), `worker` (rq worker node-$NODE_ID),
# `scheduler`, `migrate` — chosen by the command; see pixelfox/entrypoint.py.

FROM python:3.11-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md requirements.lock ./
COPY pixelfox ./pixelfox
# Exactly the locked versions (hash-checked), then the package itself without resolving again.
RUN pip wheel --wheel-dir /wheels --require-hashes -r requirements.lock \
 && pip wheel --wheel-dir /wheels --no-deps .

FROM python:3.11-slim-bookworm
# ImageMagick's library with the HEIF/AVIF coders only: no CLI tools, no build tools.
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      libmagickwand-6.q16-6 libmagickcore-6.q16-6-extra libheif1 \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index /wheels/*.whl && rm -rf /wheels
RUN useradd --system --uid 10001 --user-group --home-dir /app --no-create-home pixelfox \
 && mkdir -p /data/uploads /data/tmp && chown -R pixelfox:pixelfox /data
WORKDIR /app
COPY --chown=root:root wsgi.py worker.py gunicorn.conf.py ./
COPY --chown=root:root migrations ./migrations
COPY --chown=root:root assets ./assets
COPY --chown=root:root pixelfox ./pixelfox
# The project's restrictive ImageMagick policy (also loaded by pixelfox/imaging/magick.py).
ENV PIXELFOX_ENV=production \
    PIXELFOX_VAR_DIR=/data \
    UPLOADS_DIR=/data/uploads \
    TMP_DIR=/data/tmp \
    APP_HOST=0.0.0.0 \
    APP_PORT=4000 \
    MAGICK_CONFIGURE_PATH=/app/pixelfox/imaging \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
USER pixelfox
VOLUME ["/data"]
EXPOSE 4000
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/api/v1/ping' % os.environ.get('APP_PORT', '4000'), timeout=4)"]
ENTRYPOINT ["python", "-m", "pixelfox.entrypoint"]
CMD ["web"]
