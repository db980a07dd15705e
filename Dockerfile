# Keyward: one image for the web server, the worker and the beat (the command differs).
FROM python:3.11-slim AS base

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    DEBUG=false LOG_FORMAT=json

RUN apt-get update && apt-get install -y --no-install-recommends libpq5 && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 10001 keyward

WORKDIR /app
COPY pyproject.toml ./
RUN pip install --upgrade pip && pip install .
COPY . .
RUN mkdir -p /app/var && chown -R keyward:keyward /app/var

USER keyward
EXPOSE 8000
# Static files are collected at start so that the image holds no settings-dependent output.
CMD ["sh", "-c", "python manage.py collectstatic --no-input -v0 && python manage.py migrate --no-input && exec gunicorn project.wsgi:application -c gunicorn.conf.py"]
# gunicorn.conf.py: one worker process per core, four threads each (WEB_WORKERS / WEB_THREADS override; README,
# "Production server").
