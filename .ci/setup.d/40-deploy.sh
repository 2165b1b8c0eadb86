#!/usr/bin/env bash
# The operator toolkit's tests: an OpenSSH server on loopback (Fabric integration tests) and the
# ssh client Ansible drives. Idempotent and quiet: a second run only checks.
set -euo pipefail
need=()
command -v sshd >/dev/null 2>&1 || [ -x /usr/sbin/sshd ] || need+=(openssh-server)
command -v ssh >/dev/null 2>&1 || need+=(openssh-client)
command -v rsync >/dev/null 2>&1 || need+=(rsync)
# the jinad role's logrotate rule is exercised by the local deploy test
command -v logrotate >/dev/null 2>&1 || [ -x /usr/sbin/logrotate ] || need+=(logrotate)
if [ "${#need[@]}" -gt 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
# The Debian package starts nothing here (no systemd); tests start their own sshd on a random
# loopback port. Make sure privilege separation has its directory.
mkdir -p /run/sshd
