# ollabot: runtime image. Build: docker build -t ollabot .
# Run:   docker run --rm -v "$PWD/config:/app/config:ro" -v ollabot-data:/app/data \
#          --add-host=host.docker.internal:host-gateway \
#          -e DISCORD_TOKEN -e OLLAMA_HOST=http://host.docker.internal:11434 ollabot
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Runtime dependencies only: the package and what pyproject.toml lists under `dependencies`
# (no dev or bench extras). Sources are copied before installing because the project is
# installed as a package, not from a requirements file.
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY adapters ./adapters
COPY ollabot_app ./ollabot_app
# matrix-nio[e2e] comes with the package: vodozemac ships manylinux wheels, so no compiler and no
# libolm. The build fails here if Matrix encryption could not be loaded.
RUN pip install . && rm -rf /root/.cache \
    && python -c "import nio.crypto, sys; sys.exit(not nio.crypto.ENCRYPTION_ENABLED)"

# A non-root user owning only the data directory (the SQLite database lives there).
RUN useradd --create-home --uid 10001 ollabot \
    && mkdir -p /app/config /app/data \
    && chown ollabot:ollabot /app/data
USER ollabot

# config/bot.toml is mounted at /app/config (read-only is fine); secrets come from the
# environment. The bot runs in /app/data, so the default storage.path ("ollabot.db") and the
# Matrix crypto store beside it ("ollabot-matrix-crypto/") land in the volume: back up both.
VOLUME ["/app/data"]
WORKDIR /app/data
ENV OLLAMA_HOST=http://ollama:11434

ENTRYPOINT ["ollabot", "--config", "/app/config/bot.toml"]
CMD ["run"]
