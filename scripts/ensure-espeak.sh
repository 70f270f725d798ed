#!/usr/bin/env bash
# The keyword-spotting data set (`effai.data` "kws") is speech synthesised offline by Debian's
# espeak-ng. Install it once, when we are root and it is missing; otherwise say how, and the
# kws tests report it missing. Safe to run again: it does nothing when espeak-ng is there.
command -v espeak-ng >/dev/null 2>&1 && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing Debian's espeak-ng for the keyword-spotting data set (once)"
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends espeak-ng >/dev/null) \
    || echo "warning: could not install espeak-ng; the kws data set cannot be synthesised" >&2
else
  echo "warning: espeak-ng missing; install it (apt-get install espeak-ng) for the kws data set" >&2
fi
exit 0
