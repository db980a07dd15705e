"""The production web server: gunicorn, as the Dockerfile and compose.yaml run it (bench/load_bench.py measures this
file's settings). WEB_WORKERS and WEB_THREADS override the sizing below.

One worker process per core: Python runs one thread at a time per process, so a process per core is what uses the
machine. Four threads per process: a session request spends most of its time waiting (the platform call, the
database's commits), and while one thread waits another runs; with one thread per process, a core sits idle
during every wait. More threads than that only queue for the same core (and each holds a database connection).
"""

import os

bind = os.environ.get("WEB_BIND", "0.0.0.0:8000")
workers = int(os.environ.get("WEB_WORKERS") or os.cpu_count() or 2)
threads = int(os.environ.get("WEB_THREADS") or 4)
worker_class = "gthread"
timeout = 30  # above the platform client's 10 s read timeout, well under a load balancer's idle timeout
graceful_timeout = 30
keepalive = 5  # behind a proxy that reuses connections
max_requests = 20_000  # recycle a worker now and then (memory), not all at once
max_requests_jitter = 2_000
accesslog = os.environ.get("WEB_ACCESS_LOG", "-")
