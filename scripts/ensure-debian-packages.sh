#!/usr/bin/env bash
# Install the Debian packages named on the command line that are not installed yet (once, as root).
# Used by the Makefile's bootstrap for the data sets and toolchains that come from Debian.
# Usage: scripts/ensure-debian-packages.sh PACKAGE...
set -u
missing=()
for pkg in "$@"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing Debian packages (once): ${missing[*]}"
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null) \
    || { echo "error: could not install ${missing[*]} with apt-get" >&2; exit 1; }
else
  echo "error: missing Debian packages ${missing[*]}; install them: apt-get install ${missing[*]}" >&2
  exit 1
fi
