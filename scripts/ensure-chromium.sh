#!/usr/bin/env bash
# The report test opens the HTML report in headless Chromium (Debian's package). Install it
# once, when we are root and it is missing; otherwise say how, and the test reports it missing.
command -v chromium >/dev/null 2>&1 && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing Debian's chromium for the report test (once)"
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
    || echo "warning: could not install chromium; the report browser test will fail" >&2
else
  echo "warning: chromium missing; install it (apt-get install chromium) for the report browser test" >&2
fi
exit 0
