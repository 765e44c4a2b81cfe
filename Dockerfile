# syntax=docker/dockerfile:1
#
# The popmigrate image: the popmigrate binary on a slim Debian, run as an
# unprivileged user, with popmigrate as PID 1.
#
#   docker build -t popmigrate .
#   docker run --rm popmigrate run --help
#
# The SQLite journal driver (github.com/mattn/go-sqlite3) is C, so the
# binary is built with cgo and linked against the builder's glibc: the
# runtime stage is the same Debian release. GO_VERSION is go.mod's go line
# (cmd/popmigrate's deploy test checks that they agree).
ARG GO_VERSION=1.26.8
ARG DEBIAN_RELEASE=bookworm

FROM golang:${GO_VERSION}-${DEBIAN_RELEASE} AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=1 go build -trimpath -ldflags='-s -w' -o /out/popmigrate ./cmd/popmigrate

FROM debian:${DEBIAN_RELEASE}-slim
# ca-certificates: the system roots that verify the POP3, IMAP and
# PostgreSQL servers' certificates (--ca-file replaces them).
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*
# A fixed uid and gid, so that a Kubernetes securityContext (runAsUser,
# fsGroup) and a shared file system's owners can name them.
RUN groupadd --system --gid 10001 popmigrate \
    && useradd --system --uid 10001 --gid popmigrate --home-dir /var/lib/popmigrate \
       --no-create-home --shell /usr/sbin/nologin popmigrate \
    && install -d -o popmigrate -g popmigrate -m 0700 /var/lib/popmigrate
COPY --from=build /out/popmigrate /usr/local/bin/popmigrate
USER 10001:10001
# The working directory holds a SQLite journal given as a relative path
# and the default quarantine of a PostgreSQL journal: mount a volume here.
WORKDIR /var/lib/popmigrate
# The exec form keeps popmigrate PID 1: SIGTERM reaches it (it commits what
# was stored and exits 130), and two containers that share a host name
# (a Kubernetes Indexed Job's pod and its replacement) never take each
# other's account leases early (see README, "Scale-out").
ENTRYPOINT ["/usr/local/bin/popmigrate"]
CMD ["--help"]
