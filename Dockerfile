# The pipeline's image: the binaries (initialize, predictor, retrainer, producer, dashboard, demo,
# loadtest, registry)
# on a slim Debian. docker-compose.yml runs one service per binary from it.
#
#   docker build -t census-stream .
#   docker run --rm census-stream demo          # the one-process demo, embedded broker

# --- build -------------------------------------------------------------------
FROM rust:1-bookworm AS build
# libclang for bindgen (lightgbm3-sys); python3-venv so that scripts/env.sh can fetch
# CMake >= 3.28 from PyPI (Debian bookworm's is 3.25).
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        libclang-dev python3-venv \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
ENV CENSUS_STREAM_CACHE=/opt/census-stream-cache CARGO_TARGET_DIR=/src/target
RUN bash -c 'source scripts/env.sh && cargo build --release --locked --bins' \
    && mkdir -p /out \
    && cp target/release/initialize target/release/predictor target/release/retrainer \
        target/release/producer target/release/demo target/release/loadtest \
        target/release/registry target/release/dashboard /out/

# --- run ---------------------------------------------------------------------
FROM debian:bookworm-slim
# libgomp1: LightGBM's OpenMP runtime; ca-certificates: downloading the Adult data set;
# curl: the services' health checks (their /readyz).
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        libgomp1 ca-certificates curl \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /out/ /usr/local/bin/
# The binaries' default folders (models, dataprocessors, data) are relative to this one.
# docker-compose.yml binds the repository's folders there, so the files are the same on the
# host and in every service (the services run as root so that they can write to them).
WORKDIR /app
RUN mkdir -p models dataprocessors data
VOLUME ["/app/models", "/app/dataprocessors", "/app/data"]
CMD ["demo"]
