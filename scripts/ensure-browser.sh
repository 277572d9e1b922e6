#!/bin/sh
# Installs Debian's Chromium for the widget's browser tests when it is missing (root with apt only).
# Without it those tests skip, except under CI=true, where they must run.
[ -x /usr/bin/chromium ] && exit 0
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing chromium for the browser tests"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null || true
else
    echo "chromium not installed: browser tests will skip (install the Debian package 'chromium')"
fi
exit 0
