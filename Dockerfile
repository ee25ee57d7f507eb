# The adstream image: one binary, the topology and the Avro schemas it ships, on a slim Debian, as a non-root user.
#
#   docker build -t adstream:0.1.0 .
#   docker run --rm adstream:0.1.0 --version
#
# CI has no image registry or Docker engine: dev/rootfs builds the same runtime root filesystem from Debian packages
# (mmdebstrap, reading DEBIAN_SUITE and RUNTIME_PACKAGES below) and runs the binary in it.

# Build and run on one Debian release, so the binary finds the glibc and OpenSSL it was linked against.
ARG DEBIAN_SUITE=bookworm

FROM rust:1-slim-${DEBIAN_SUITE} AS build
# librdkafka is built from source (rdkafka's cmake-build, bundled) with TLS, zlib and curl: the tools and headers of
# dev/setup's system packages.
RUN apt-get update \
    && apt-get install -y --no-install-recommends cmake make g++ pkg-config libssl-dev zlib1g-dev libcurl4-openssl-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin adstream \
    && install -D target/release/adstream /out/adstream

FROM debian:${DEBIAN_SUITE}-slim
# The shared libraries the binary links (OpenSSL, curl, zlib) and the CA roots for HTTPS and Kafka TLS.
ARG RUNTIME_PACKAGES="ca-certificates libssl3 libcurl4 zlib1g"
# uid/gid 10001: the chart's pod securityContext runs as it (runAsNonRoot needs a numeric USER).
RUN apt-get update \
    && apt-get install -y --no-install-recommends ${RUNTIME_PACKAGES} \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --gid 10001 adstream \
    && useradd --uid 10001 --gid 10001 --home-dir /nonexistent --no-create-home --shell /usr/sbin/nologin adstream
COPY --from=build /out/adstream /usr/local/bin/adstream
# The defaults of `--topology topology/adstream.yaml` and `schemas register --dir schemas` resolve here.
COPY topology/adstream.yaml /usr/share/adstream/topology/adstream.yaml
COPY schemas/*.avsc /usr/share/adstream/schemas/
WORKDIR /usr/share/adstream
USER 10001:10001
ENTRYPOINT ["adstream"]
CMD ["--help"]
