#!/usr/bin/env bash
# The role tests' test host: an image `jinad-fab/systemd-test` with systemd as PID 1 and
# openssh-server, made from the multihost tier's cached rootfs (30-multihost.sh) in a chroot with
# the machine's own network and apt sources (no image registry is reachable). Containers from it
# boot systemd; host keys are made at first boot, the test writes root's authorized key.
#
# Beside it, a cache of the Debian packages the roles install on such a host (docker.io and what
# it pulls in, logrotate): the tests serve them as an apt mirror on the test network, because the
# test hosts have no way out. Idempotent and quiet: does nothing when both exist.
set -euo pipefail

IMAGE="${JINAD_FAB_SYSTEMD_IMAGE:-jinad-fab/systemd-test}"
CACHE_DIR="${JINAD_FAB_CACHE_DIR:-/var/cache/jinad-fab}"
LOG_DIR="${JINAD_FAB_LOG_DIR:-/var/log/jinad-fab}"
SSHD_TAR="$CACHE_DIR/sshd-bookworm-rootfs.tar"
SYSTEMD_TAR="$CACHE_DIR/systemd-bookworm-rootfs.tar"
DEBS_DIR="$CACHE_DIR/debs-bookworm"
# what the roles under test install with apt on a fresh host
ROLE_PACKAGES=(docker.io logrotate)
mkdir -p "$CACHE_DIR" "$LOG_DIR"

docker info >/dev/null 2>&1 || { echo "systemd host: no Docker engine (20-docker.sh starts one)" >&2; exit 1; }
if docker image inspect "$IMAGE" >/dev/null 2>&1 && [ -s "$DEBS_DIR/.complete" ]; then
    exit 0
fi

if [ ! -s "$SYSTEMD_TAR" ] || [ ! -s "$DEBS_DIR/.complete" ]; then
    [ -s "$SSHD_TAR" ] || { echo "systemd host: $SSHD_TAR is missing (30-multihost.sh makes it)" >&2; exit 1; }
    ROOT="$(mktemp -d "$CACHE_DIR/systemd-rootfs.XXXXXX")"
    cleanup() {
        umount "$ROOT/proc" 2>/dev/null || true
        rm -rf "$ROOT"
    }
    trap cleanup EXIT
    echo "systemd host: adding systemd to the sshd rootfs (log: $LOG_DIR/systemd-image.log)"
    tar -C "$ROOT" -xf "$SSHD_TAR"
    cp /etc/resolv.conf "$ROOT/etc/resolv.conf"
    if [ -d /etc/apt/sources.list.d ] && ls /etc/apt/sources.list.d/*.sources >/dev/null 2>&1; then
        cp /etc/apt/sources.list.d/*.sources "$ROOT/etc/apt/sources.list.d/"
        rm -f "$ROOT/etc/apt/sources.list"
    fi
    printf '#!/bin/sh\nexit 101\n' >"$ROOT/usr/sbin/policy-rc.d"
    chmod 0755 "$ROOT/usr/sbin/policy-rc.d"
    mount -t proc proc "$ROOT/proc"
    {
        chroot "$ROOT" apt-get update -qq
        # python3-apt and python3-debian: what Ansible's apt and deb822_repository modules import
        DEBIAN_FRONTEND=noninteractive chroot "$ROOT" apt-get install -y -qq --no-install-recommends \
            systemd systemd-sysv dbus python3-apt python3-debian
        mkdir -p "$ROOT/tmp/debs/partial"
        DEBIAN_FRONTEND=noninteractive chroot "$ROOT" apt-get install -y -qq --no-install-recommends \
            --download-only -o Dir::Cache::archives=/tmp/debs "${ROLE_PACKAGES[@]}"
    } >"$LOG_DIR/systemd-image.log" 2>&1 || { tail -30 "$LOG_DIR/systemd-image.log" >&2; exit 1; }
    umount "$ROOT/proc"
    rm -rf "$DEBS_DIR"
    mkdir -p "$DEBS_DIR"
    mv "$ROOT"/tmp/debs/*.deb "$DEBS_DIR/"
    rm -rf "$ROOT/tmp/debs"
    printf '%s\n' "${ROLE_PACKAGES[@]}" >"$DEBS_DIR/.complete"
    rm -f "$ROOT/usr/sbin/policy-rc.d" "$ROOT"/etc/ssh/ssh_host_* "$ROOT/etc/machine-id"
    : >"$ROOT/etc/machine-id"  # empty: systemd makes one at boot
    # no mirror is reachable from a test host: the tests write their own sources
    rm -f "$ROOT"/etc/apt/sources.list.d/*.sources "$ROOT/etc/apt/sources.list"
    rm -rf "$ROOT"/var/lib/apt/lists/* "$ROOT"/var/cache/apt/*.bin "$ROOT"/var/cache/apt/archives/*.deb
    # host keys at first boot, before sshd starts
    cat >"$ROOT/etc/systemd/system/ssh-hostkeys.service" <<'UNIT'
[Unit]
Description=Generate this test host's SSH host keys
Before=ssh.service
ConditionPathExists=!/etc/ssh/ssh_host_ed25519_key

[Service]
Type=oneshot
ExecStart=/usr/bin/ssh-keygen -A

[Install]
WantedBy=multi-user.target
UNIT
    mkdir -p "$ROOT/etc/systemd/system/multi-user.target.wants" "$ROOT/etc/systemd/system/ssh.service.wants"
    ln -sf /etc/systemd/system/ssh-hostkeys.service "$ROOT/etc/systemd/system/ssh.service.wants/ssh-hostkeys.service"
    ln -sf /lib/systemd/system/ssh.service "$ROOT/etc/systemd/system/multi-user.target.wants/ssh.service"
    # units that have nothing to do in a container
    for unit in getty@tty1.service console-getty.service systemd-logind.service \
        sys-kernel-config.mount sys-kernel-debug.mount sys-kernel-tracing.mount; do
        ln -sf /dev/null "$ROOT/etc/systemd/system/$unit"
    done
    ln -sf /lib/systemd/system/multi-user.target "$ROOT/etc/systemd/system/default.target"
    tar --numeric-owner -C "$ROOT" -cf "$SYSTEMD_TAR.tmp" .
    mv "$SYSTEMD_TAR.tmp" "$SYSTEMD_TAR"
fi
echo "systemd host: importing $IMAGE"
docker image rm "$IMAGE" >/dev/null 2>&1 || true
docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'ENV container=docker' \
    --change 'EXPOSE 22' \
    --change 'CMD ["/lib/systemd/systemd"]' \
    "$SYSTEMD_TAR" "$IMAGE" >/dev/null
