FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    INSTANCE_PATH=/var/lib/reportcycles

# Installed as a wheel (not editable) from a build folder that is removed afterwards, so the
# image runs what `pip install .` ships and nothing from the checkout.
WORKDIR /build
COPY . .
RUN pip install --no-cache-dir . \
    && rm -rf /build \
    && useradd --system --uid 10001 --home-dir /var/lib/reportcycles --shell /usr/sbin/nologin reportcycles \
    && mkdir -p /var/lib/reportcycles/uploads \
    && chown -R reportcycles:reportcycles /var/lib/reportcycles
# The uploads folder exists, owned by the user, before a named volume is mounted on it: Docker
# fills a new volume from the image, owner included.

WORKDIR /var/lib/reportcycles
USER reportcycles
EXPOSE 8000
CMD ["gunicorn", "--bind", "0.0.0.0:8000", "--workers", "3", "--threads", "4", "--timeout", "120", "reportcycles.wsgi:create_app()"]
