#!/usr/bin/env bash
# The multihost tier's SSH hosts: an image `jinad-fab/sshd-test` made from the local base image's
# cached rootfs (20-docker.sh) plus openssh-server, installed in a chroot with the machine's own
# network and apt sources (no image registry is reachable). Containers from it generate their
# own host keys at start and accept the key passed in $AUTHORIZED_KEY for root.
# Idempotent and quiet: does nothing when the image exists.
set -euo pipefail

IMAGE="${JINAD_FAB_SSHD_IMAGE:-jinad-fab/sshd-test}"
CACHE_DIR="${JINAD_FAB_CACHE_DIR:-/var/cache/jinad-fab}"
LOG_DIR="${JINAD_FAB_LOG_DIR:-/var/log/jinad-fab}"
ROOTFS_TAR="$CACHE_DIR/base-bookworm-rootfs.tar"
SSHD_TAR="$CACHE_DIR/sshd-bookworm-rootfs.tar"
mkdir -p "$CACHE_DIR" "$LOG_DIR"

# The CURVE test captures the traffic between two hosts with tcpdump on the test network's bridge.
if ! command -v tcpdump >/dev/null 2>&1; then
    { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends tcpdump ||
        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends tcpdump; }
    } >"$LOG_DIR/tcpdump-install.log" 2>&1 || { tail -20 "$LOG_DIR/tcpdump-install.log" >&2; exit 1; }
fi

docker info >/dev/null 2>&1 || { echo "multihost: no Docker engine (20-docker.sh starts one)" >&2; exit 1; }
docker image inspect "$IMAGE" >/dev/null 2>&1 && exit 0

if [ ! -s "$SSHD_TAR" ]; then
    [ -s "$ROOTFS_TAR" ] || { echo "multihost: $ROOTFS_TAR is missing (20-docker.sh makes it)" >&2; exit 1; }
    ROOT="$(mktemp -d "$CACHE_DIR/sshd-rootfs.XXXXXX")"
    cleanup() {
        umount "$ROOT/proc" 2>/dev/null || true
        rm -rf "$ROOT"
    }
    trap cleanup EXIT
    echo "multihost: adding openssh-server to the base rootfs (log: $LOG_DIR/sshd-image.log)"
    tar -C "$ROOT" -xf "$ROOTFS_TAR"
    cp /etc/resolv.conf "$ROOT/etc/resolv.conf"
    # apt sources: the same mirror the machine uses
    if [ -d /etc/apt/sources.list.d ] && ls /etc/apt/sources.list.d/*.sources >/dev/null 2>&1; then
        cp /etc/apt/sources.list.d/*.sources "$ROOT/etc/apt/sources.list.d/"
        rm -f "$ROOT/etc/apt/sources.list"
    fi
    printf '#!/bin/sh\nexit 101\n' >"$ROOT/usr/sbin/policy-rc.d"
    chmod 0755 "$ROOT/usr/sbin/policy-rc.d"
    mount -t proc proc "$ROOT/proc"
    {
        chroot "$ROOT" apt-get update -qq
        DEBIAN_FRONTEND=noninteractive chroot "$ROOT" apt-get install -y -qq --no-install-recommends \
            openssh-server procps
    } >"$LOG_DIR/sshd-image.log" 2>&1 || { tail -30 "$LOG_DIR/sshd-image.log" >&2; exit 1; }
    umount "$ROOT/proc"
    rm -f "$ROOT/usr/sbin/policy-rc.d" "$ROOT"/etc/ssh/ssh_host_*
    rm -rf "$ROOT"/var/lib/apt/lists/* "$ROOT"/var/cache/apt/*.bin "$ROOT"/var/cache/apt/archives/*.deb
    cat >"$ROOT/usr/local/sbin/start-sshd" <<'SCRIPT'
#!/bin/sh
# Each test host: fresh host keys, root logs in with the key the test generated.
set -eu
mkdir -p /root/.ssh /run/sshd
chmod 0700 /root/.ssh
printf '%s\n' "${AUTHORIZED_KEY:?AUTHORIZED_KEY must hold a public key}" >/root/.ssh/authorized_keys
chmod 0600 /root/.ssh/authorized_keys
ssh-keygen -A >/dev/null
exec /usr/sbin/sshd -D -e -o PermitRootLogin=prohibit-password -o PasswordAuthentication=no -o UsePAM=no
SCRIPT
    chmod 0755 "$ROOT/usr/local/sbin/start-sshd"
    tar --numeric-owner -C "$ROOT" -cf "$SSHD_TAR.tmp" .
    mv "$SSHD_TAR.tmp" "$SSHD_TAR"
fi
echo "multihost: importing $IMAGE"
docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'EXPOSE 22' \
    --change 'CMD ["/usr/local/sbin/start-sshd"]' \
    "$SSHD_TAR" "$IMAGE" >/dev/null
