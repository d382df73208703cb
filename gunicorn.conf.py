"""gunicorn settings for the web role, from the environment (SPEC §2 names)."""

import multiprocessing
import os

bind = f"{os.environ.get('APP_HOST', '127.0.0.1')}:{os.environ.get('APP_PORT', '4000')}"
workers = int(os.environ.get("WEB_CONCURRENCY", min(2 * multiprocessing.cpu_count() + 1, 8)))
threads = int(os.environ.get("WEB_THREADS", "2"))
timeout = int(os.environ.get("WEB_TIMEOUT", "120"))  # large uploads over slow links
graceful_timeout = 30
keepalive = 5
# Requests arrive through the reverse proxy on this host/network; PROXY_COUNT tells the app
# how many X-Forwarded-For hops to trust.
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")
accesslog = "-"
errorlog = "-"
# Worker heartbeat files in memory, not on a possibly slow container disk.
_shm = "/dev/shm"  # noqa: S108
worker_tmp_dir = os.environ.get("GUNICORN_TMP_DIR", _shm if os.path.isdir(_shm) else None)
limit_request_line = 8190
