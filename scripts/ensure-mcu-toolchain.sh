#!/usr/bin/env bash
# effai deploy (and its tests) build Cortex-M firmware with Debian's Arm toolchain and run it in
# QEMU. Install them once, when we are root and they are missing; otherwise say how.
if command -v arm-none-eabi-gcc >/dev/null 2>&1 && command -v qemu-system-arm >/dev/null 2>&1 \
   && [ -e /usr/lib/arm-none-eabi/newlib/libc_nano.a ]; then
  exit 0
fi
PKGS="gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm"
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing Debian's $PKGS for effai deploy (once)"
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $PKGS >/dev/null) \
    || echo "warning: could not install $PKGS; the microcontroller tests will fail" >&2
else
  echo "warning: the Arm toolchain or QEMU is missing; install them (apt-get install $PKGS) for effai deploy" >&2
fi
exit 0
