#!/usr/bin/env bash
# Installs the system packages PixelFox needs when they are missing (Debian/Ubuntu):
# ImageMagick's MagickWand library with the HEIF/AVIF coders, and the `convert` CLI
# (used by `make bench` as the baseline). Arguments add extras: "browser" Chromium (browser
# tests), "s3" Ceph's monitor, OSD and RADOS Gateway (the real S3 server of the tests).
set -euo pipefail

need=()
ldconfig -p 2>/dev/null | grep -q 'libMagickWand-6.Q16.so' || need+=(libmagickwand-6.q16-6)
[ -e /usr/lib/x86_64-linux-gnu/ImageMagick-6.9.11/modules-Q16/coders/heic.so ] \
  || ls /usr/lib/*/ImageMagick-6*/modules-Q16/coders/heic.so >/dev/null 2>&1 \
  || need+=(libmagickcore-6.q16-6-extra libheif1)
[ -x /usr/bin/convert ] || need+=(imagemagick)
for extra in "$@"; do
  case $extra in
    browser) command -v chromium >/dev/null 2>&1 || need+=(chromium) ;;
    s3)
      for cmd in ceph-mon:ceph-mon ceph-osd:ceph-osd radosgw:radosgw curl:curl; do
        command -v "${cmd%%:*}" >/dev/null 2>&1 || need+=("${cmd##*:}")
      done ;;
    *) echo "unknown extra: $extra (browser, s3)" >&2; exit 2 ;;
  esac
done

[ ${#need[@]} -eq 0 ] && exit 0
echo "Installing system packages: ${need[*]}"
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get -o DPkg::Lock::Timeout=600 update -qq
$SUDO apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${need[@]}"
