# The wahub image: the package and its pinned dependencies, nothing else.
#
# Run alone, it is the embedded default: SQLite in /data (mount a volume there to keep
# it) and the workers in the server process, so it sends with no other container:
#
#   docker build -t wahub . && docker run -p 8080:8080 -v wahub-data:/data \
#     -e WAHUB_BOOTSTRAP_ADMIN_KEY="$(openssl rand -hex 32)" wahub
#
# compose.yaml runs the scale-out topology from the same image (PostgreSQL, `serve
# --no-workers`, `worker` processes) by overriding the command.
FROM python:3.11-slim
WORKDIR /app
# neonize (WhatsApp Web sessions) loads libmagic1 at import time; the slim image lacks it.
RUN apt-get update && apt-get install -y --no-install-recommends libmagic1 \
    && rm -rf /var/lib/apt/lists/*
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install --no-cache-dir .
# A hub has no reason to run as root; /data is the one place it writes.
RUN useradd --system --home /app wahub && mkdir /data && chown wahub /data
USER wahub
ENV WAHUB_DATABASE_URL=sqlite:////data/wahub.db
VOLUME /data
EXPOSE 8080
CMD ["wahub", "serve", "--host", "0.0.0.0", "--port", "8080"]
