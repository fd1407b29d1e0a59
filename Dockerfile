# Builds the switchyard binary in a builder stage and ships it alone.
#
# The dependencies (nearly all of a clean build's time) are compiled in a
# layer of their own, keyed only by the manifests and the lock file
# (cargo-chef's recipe): a change to Switchyard's own code rebuilds only
# Switchyard's own crates.
FROM rust:1.95-bookworm AS chef
RUN cargo install cargo-chef --version 0.1.78 --locked
WORKDIR /src

FROM chef AS plan
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS build
COPY --from=plan /src/recipe.json recipe.json
RUN cargo chef cook --release --locked --recipe-path recipe.json --bin switchyard
COPY . .
# Query metadata is committed in .sqlx: no database is needed to build.
ENV SQLX_OFFLINE=true
RUN cargo build --release --locked --bin switchyard

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 switchyard \
    && mkdir -p /var/lib/switchyard && chown switchyard /var/lib/switchyard
# `switchyard dev` without a database keeps its embedded store here
# (mount a volume on it to keep it); deployments use PostgreSQL.
WORKDIR /var/lib/switchyard
COPY --from=build /src/target/release/switchyard /usr/local/bin/switchyard
COPY switchyard.example.toml /etc/switchyard/switchyard.toml
USER switchyard
# Ready when /readyz says so: the api's port by default; a worker started
# with --metrics-listen sets SWITCHYARD_HEALTH_URL to its own /readyz.
HEALTHCHECK --interval=10s --timeout=4s --start-period=20s --retries=3 \
    CMD ["switchyard", "probe"]
ENTRYPOINT ["switchyard"]
CMD ["--help"]
