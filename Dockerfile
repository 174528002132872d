# One image for the simulator, the workers and beat (docker-compose.yml).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# The wheel ships config/ and workflows/ for `treasury demo` (pyproject force-include),
# so they are copied before the install; the containers also read them from /app.
COPY pyproject.toml README.md ./
COPY treasury ./treasury
COPY config ./config
COPY workflows ./workflows
RUN pip install . \
    && useradd --system --uid 10001 --home-dir /app treasury \
    && mkdir -p /var/lib/treasury \
    && chown -R treasury /app /var/lib/treasury

# Celery warns against running workers as root; nothing here needs it.
USER treasury

CMD ["treasury", "--help"]
