# Build and run dialtone. One image serves every role: `serve`, `api`, `provision`, `migrate`.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY sql ./sql
COPY openapi ./openapi
RUN cargo build --release --locked --bin dialtone

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl libcap2-bin \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --home /var/lib/dialtone --create-home dialtone
COPY --from=build /src/target/release/dialtone /usr/local/bin/dialtone
# TFTP listens on udp/69 without running as root.
RUN setcap cap_net_bind_service=+ep /usr/local/bin/dialtone
USER dialtone
WORKDIR /var/lib/dialtone
ENV DIALTONE_DATA_DIR=/var/lib/dialtone
# API, TFTP (udp), HTTP files, admin
EXPOSE 8080 69/udp 6970 9970
ENTRYPOINT ["/usr/local/bin/dialtone"]
CMD ["serve"]
