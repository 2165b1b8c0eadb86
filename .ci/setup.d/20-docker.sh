#!/usr/bin/env bash
# A Docker engine for the docker test tier, and the local base image its workspace builds start from.
#
# No image registry is reachable from CI, so the base image is made here: debootstrap a minimal
# Debian with python3, tar it into `docker import`. The rootfs tarball is cached on the machine
# so a second run only re-imports it (or does nothing when the image is already there).
# Idempotent and quiet: it prints one line per step it actually had to take.
set -euo pipefail

BASE_IMAGE="${JINAD_FAB_TEST_BASE_IMAGE:-jinad-fab/base:bookworm}"
CACHE_DIR="${JINAD_FAB_CACHE_DIR:-/var/cache/jinad-fab}"
LOG_DIR="${JINAD_FAB_LOG_DIR:-/var/log/jinad-fab}"
SUITE=bookworm
ROOTFS_TAR="$CACHE_DIR/base-$SUITE-rootfs.tar"
mkdir -p "$CACHE_DIR" "$LOG_DIR"

apt_install() {
    if [ ! -e "$CACHE_DIR/.apt-updated" ] || [ -n "$(find "$CACHE_DIR/.apt-updated" -mmin +720)" ]; then
        apt-get update -qq >/dev/null
        touch "$CACHE_DIR/.apt-updated"
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" \
        >"$LOG_DIR/apt-install.log" 2>&1 || { tail -20 "$LOG_DIR/apt-install.log"; exit 1; }
}

# 1. An engine that answers.
if ! docker info >/dev/null 2>&1; then
    if ! command -v dockerd >/dev/null 2>&1; then
        echo "docker: installing docker.io"
        apt_install docker.io
    fi
    if ! command -v docker >/dev/null 2>&1; then
        apt_install docker-cli || true
    fi
    echo "docker: starting dockerd (log: $LOG_DIR/dockerd.log)"
    nohup dockerd >>"$LOG_DIR/dockerd.log" 2>&1 </dev/null &
    for _ in $(seq 60); do
        docker info >/dev/null 2>&1 && break
        sleep 1
    done
    if ! docker info >/dev/null 2>&1; then
        echo "docker: dockerd did not answer within 60s; last log lines:" >&2
        tail -30 "$LOG_DIR/dockerd.log" >&2
        exit 1
    fi
fi

# 2. Docker Compose (Debian's docker-compose), for the export tests (`jinad-fab export compose`).
if ! command -v docker-compose >/dev/null 2>&1; then
    echo "docker: installing docker-compose"
    apt_install docker-compose
fi

# 3. The local base image.
if docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
    exit 0
fi
if [ ! -s "$ROOTFS_TAR" ]; then
    command -v debootstrap >/dev/null 2>&1 || apt_install debootstrap
    # Use the mirror apt is already configured with, rather than naming one here.
    MIRROR="$(sed -n 's/^URIs:[[:space:]]*\([^[:space:]]*\/debian\)$/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -1)"
    if [ -z "$MIRROR" ]; then
        MIRROR="$(awk '$1 == "deb" && $2 !~ /security/ {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)"
    fi
    ROOTFS="$(mktemp -d "$CACHE_DIR/rootfs.XXXXXX")"
    trap 'rm -rf "$ROOTFS"' EXIT
    echo "docker: debootstrapping $SUITE into a cache (log: $LOG_DIR/debootstrap.log)"
    debootstrap --variant=minbase --include=python3,python3-venv,python3-pip,ca-certificates \
        "$SUITE" "$ROOTFS" ${MIRROR:+"$MIRROR"} >"$LOG_DIR/debootstrap.log" 2>&1 \
        || { tail -30 "$LOG_DIR/debootstrap.log" >&2; exit 1; }
    # Slim the image: apt lists and caches are of no use inside it.
    rm -rf "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/cache/apt/*.bin "$ROOTFS"/var/cache/apt/archives/*.deb
    tar --numeric-owner -C "$ROOTFS" -cf "$ROOTFS_TAR.tmp" .
    mv "$ROOTFS_TAR.tmp" "$ROOTFS_TAR"
fi
echo "docker: importing $BASE_IMAGE from $ROOTFS_TAR"
docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["python3"]' \
    "$ROOTFS_TAR" "$BASE_IMAGE" >/dev/null
