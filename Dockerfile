# The wahub image used by compose.yaml: the package and its pinned dependencies, nothing else.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install --no-cache-dir .
# PostgreSQL refuses nothing here, but a hub has no reason to run as root.
RUN useradd --system --home /app wahub
USER wahub
EXPOSE 8080
CMD ["wahub", "serve", "--host", "0.0.0.0", "--no-workers"]
