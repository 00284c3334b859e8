FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    REPORTCYCLES_INSTANCE=/app/instance

WORKDIR /app
COPY . .
RUN pip install --no-cache-dir -e . \
    && useradd --system --create-home --uid 10001 reportcycles \
    && mkdir -p /app/instance \
    && chown -R reportcycles:reportcycles /app/instance

USER reportcycles
EXPOSE 8000
CMD ["reportcycles", "serve"]
