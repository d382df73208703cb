# First draft (the production issue finishes it): one image for every role —
# web (gunicorn), worker (rq worker node-<id>), scheduler, migrations.
FROM python:3.11-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY pixelfox ./pixelfox
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim-bookworm
RUN apt-get update \
 && apt-get install -y --no-install-recommends libmagickwand-6.q16-6 libmagickcore-6.q16-6-extra libheif1 curl \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/* && rm -rf /wheels
WORKDIR /app
COPY wsgi.py worker.py ./
COPY migrations ./migrations
COPY assets ./assets
COPY pixelfox ./pixelfox
RUN useradd --system --uid 10001 --home /app pixelfox && mkdir -p /data && chown pixelfox /data
ENV PIXELFOX_ENV=production PIXELFOX_VAR_DIR=/data UPLOADS_DIR=/data/uploads TMP_DIR=/data/tmp \
    MAGICK_CONFIGURE_PATH=/app/pixelfox/imaging PYTHONUNBUFFERED=1
USER pixelfox
EXPOSE 4000
HEALTHCHECK --interval=30s --timeout=3s CMD curl -fsS http://127.0.0.1:4000/api/v1/ping || exit 1
CMD ["gunicorn", "--bind", "0.0.0.0:4000", "--workers", "3", "wsgi:app"]
