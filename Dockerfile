# The demo and CLI in a container. Build: docker build -t asynccache .
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY asynccache ./asynccache
RUN pip install --no-cache-dir ".[uvloop]"
ENTRYPOINT ["asynccache"]
CMD ["demo"]
