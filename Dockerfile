# Builds the relay and subscriber commands into a small Debian image.
#
#   docker build -t pgrelay .
#   docker run --rm -e PG_DATABASE_URL=... -e REDIS_URL=... pgrelay

FROM golang:1.26 AS build
WORKDIR /src
# Modules first, so that editing code does not download them again.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# No cgo: static binaries that need nothing from the runtime image's libraries.
ENV CGO_ENABLED=0
RUN go build -trimpath -ldflags='-s -w' -o /out/relay ./cmd/relay \
 && go build -trimpath -ldflags='-s -w' -o /out/subscriber ./cmd/subscriber

FROM debian:bookworm-slim
# CA certificates for TLS connections to managed PostgreSQL and Redis.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/*
RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin pgrelay
COPY --from=build /out/relay /out/subscriber /usr/local/bin/
# Numeric, so that Kubernetes can check runAsNonRoot without reading /etc/passwd.
USER 10001:10001
ENTRYPOINT ["relay"]
CMD ["run"]
