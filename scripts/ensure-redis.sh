#!/usr/bin/env bash
# The tests start their own redis-server (free loopback port, no persistence); make sure the
# binary exists. Installs Debian's redis-server with apt-get when missing and we are root.
# Installing the package must not leave a new server running that we did not ask for, so
# service start-up is blocked during the install with a policy-rc.d.
set -euo pipefail
if command -v redis-server >/dev/null; then exit 0; fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "ensure-redis: installing redis-server with apt-get" >&2
  created=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && created=1
  fi
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
  [ "$created" = 1 ] && rm -f /usr/sbin/policy-rc.d
  command -v redis-server >/dev/null && exit 0
fi
cat >&2 <<MSG
ensure-redis: the tests need a redis-server binary (they start their own on a free port).
Install it, then run make test again:
  Debian/Ubuntu: sudo apt-get install redis-server
  macOS:         brew install redis
MSG
exit 1
