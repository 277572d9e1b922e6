#!/bin/sh
# Installs Debian's nginx for the multi-replica deployment test (tests/test_deploy_nginx.py) when it is
# missing (root with apt only). Without it that test skips, except under CI=true, where it must run.
# Only the binary is used: the test starts its own nginx with deploy/nginx.conf on free ports.
command -v nginx >/dev/null 2>&1 && exit 0
[ -x /usr/sbin/nginx ] && exit 0
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing nginx for the deployment test"
    # RUNLEVEL=1: the package's scripts do not start the system nginx on port 80 (the test needs none).
    apt-get update -qq && RUNLEVEL=1 DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends nginx >/dev/null || true
else
    echo "nginx not installed: the deployment test will skip (install the Debian package 'nginx')"
fi
exit 0
