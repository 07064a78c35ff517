# The ecom image: the one `ecom` binary on a small, non-root runtime image.
#
#   docker build -t ecom .
#   docker run --rm -p 8080:8080 ecom                      # every service, SQLite, embedded bus
#   docker run --rm ecom serve orders --database-url …     # one service of a replicated deployment
#
# See docs/operations.md ("Replicated topology") and deploy/.

ARG RUST_VERSION=1.95

# --- build: the release binary, with the dependencies cached in a layer of their own
FROM rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin ecom \
 && cp target/release/ecom /usr/local/bin/ecom \
 && strip /usr/local/bin/ecom \
 && mkdir -p /var/lib/ecom

# --- runtime: glibc and libgcc, no shell, no package manager; user 65532
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /usr/local/bin/ecom /usr/local/bin/ecom
COPY --from=build --chown=65532:65532 /var/lib/ecom /var/lib/ecom
COPY data/catalogue.json /usr/share/ecom/catalogue.json
USER 65532:65532
ENV ECOM_LISTEN=0.0.0.0:8080 \
    ECOM_DATA_DIR=/var/lib/ecom \
    ECOM_LOG_FORMAT=json
EXPOSE 8080
VOLUME ["/var/lib/ecom"]
ENTRYPOINT ["/usr/local/bin/ecom"]
CMD ["up"]
