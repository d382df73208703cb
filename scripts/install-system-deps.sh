#!/usr/bin/env bash
# Installs the system packages PixelFox needs when they are missing (Debian/Ubuntu):
# ImageMagick's MagickWand library with the HEIF/AVIF coders, and the `convert` CLI
# (used by `make bench` as the baseline). Pass "browser" to add Chromium for browser tests.
set -euo pipefail

need=()
ldconfig -p 2>/dev/null | grep -q 'libMagickWand-6.Q16.so' || need+=(libmagickwand-6.q16-6)
[ -e /usr/lib/x86_64-linux-gnu/ImageMagick-6.9.11/modules-Q16/coders/heic.so ] \
  || ls /usr/lib/*/ImageMagick-6*/modules-Q16/coders/heic.so >/dev/null 2>&1 \
  || need+=(libmagickcore-6.q16-6-extra libheif1)
[ -x /usr/bin/convert ] || need+=(imagemagick)
if [ "${1:-}" = "browser" ]; then
  command -v chromium >/dev/null 2>&1 || need+=(chromium)
fi

[ ${#need[@]} -eq 0 ] && exit 0
echo "Installing system packages: ${need[*]}"
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${need[@]}"
