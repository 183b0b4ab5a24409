# The project image: every role (worker, sandbox, publisher tools) runs the same `recalls` CLI.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY shared ./shared
COPY producers ./producers
COPY workers ./workers
COPY simulator ./simulator
COPY cli ./cli
RUN pip install --no-cache-dir . && useradd --system recalls
USER recalls
ENTRYPOINT ["recalls"]
CMD ["--help"]
