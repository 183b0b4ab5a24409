# The project image: every role (worker, batch API, sandbox, publisher tools) runs the same `recalls` CLI.
# Only the package sources are copied in (never .env or a local database); settings and credentials come
# from the environment at run time.  Dependencies come from locks/runtime.txt, each file checked against
# its hash; the project itself is then built with the locked setuptools, fetching nothing more.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
COPY locks/runtime.txt ./locks/runtime.txt
RUN pip install --no-cache-dir --require-hashes -r locks/runtime.txt
COPY pyproject.toml README.md LICENSE ./
COPY shared ./shared
COPY producers ./producers
COPY workers ./workers
COPY sandbox ./sandbox
COPY cli ./cli
COPY ops ./ops
# recalls/ is the one import root; its packages are links to the folders above (pip follows them).
COPY recalls ./recalls
RUN pip install --no-cache-dir --no-deps --no-build-isolation . \
    && useradd --system --create-home --home-dir /home/recalls recalls

# The working directory is where a worker without RECALLS_DATABASE_URL keeps its SQLite file,
# so it must be writable by the user the processes run as.
USER recalls
WORKDIR /home/recalls
ENTRYPOINT ["recalls"]
CMD ["--help"]
