#!/usr/bin/env bash
# Installs the package in a fresh Debian 12 (bookworm) chroot, made with debootstrap, and checks
# that it installs, that its files land where Debian expects them, that it runs, and that
# reinstall, remove and purge behave:
#   packaging/test-install.sh [DEB]      default: the newest build-pkg/modelfs_*.deb
# Needs root, debootstrap and the Debian mirror (MODELFS_DEBIAN_MIRROR, default
# http://deb.debian.org/debian). The bootstrapped root (minbase plus systemd, as on a server) is
# cached as a tarball in /var/tmp/modelfs-test-install/, so later runs take seconds; each run
# unpacks it into a new folder and deletes that afterwards. The mount itself is tested by
# tests/e2e/test_deploy.py.
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
[ "$(id -u)" = 0 ] || { echo "test-install: needs root (debootstrap, chroot)" >&2; exit 1; }
command -v debootstrap >/dev/null || { echo "test-install: debootstrap is missing; run packaging/install-deps.sh --package" >&2; exit 1; }
deb=${1:-$(ls -t "$src"/build-pkg/modelfs_*.deb 2>/dev/null | head -n 1)}
[ -n "$deb" ] && [ -f "$deb" ] || { echo "test-install: no .deb; run packaging/build-deb.sh first" >&2; exit 1; }
deb=$(realpath "$deb")
version=$(dpkg-deb -f "$deb" Version)
arch=$(dpkg-deb -f "$deb" Architecture)
mirror=${MODELFS_DEBIAN_MIRROR:-http://deb.debian.org/debian}
cache=/var/tmp/modelfs-test-install
base=$cache/bookworm-minbase-systemd-$arch.tar
mkdir -p "$cache"

if [ ! -s "$base" ]; then
  echo "== debootstrap bookworm ($mirror), cached as $base"
  tmp=$(mktemp -d "$cache/debootstrap.XXXXXX")
  timeout 1800 debootstrap --variant=minbase --include=systemd --arch="$arch" bookworm "$tmp/root" "$mirror"
  tar -C "$tmp/root" -cf "$base.part" .
  mv "$base.part" "$base"
  rm -rf --one-file-system "$tmp"
fi

root=$(mktemp -d /var/tmp/modelfs-chroot.XXXXXX)
cleanup() {
  for m in "$root/dev/pts" "$root/dev" "$root/proc"; do
    mountpoint -q "$m" 2>/dev/null && umount -l "$m"
  done
  # --one-file-system: never into a bind mount that failed to unmount.
  rm -rf --one-file-system "$root"
}
trap cleanup EXIT
tar -C "$root" -xf "$base"
mount -t proc proc "$root/proc"
mount --bind /dev "$root/dev"
mount --bind /dev/pts "$root/dev/pts"
cp /etc/resolv.conf "$root/etc/resolv.conf"
printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"  # no daemons start in the chroot
chmod 0755 "$root/usr/sbin/policy-rc.d"
cp "$deb" "$root/tmp/"
debname=$(basename "$deb")

in_root() {
  timeout 600 chroot "$root" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LC_ALL=C.UTF-8 \
    DEBIAN_FRONTEND=noninteractive HOME=/root "$@"
}
fails=0
check() {  # check DESCRIPTION COMMAND...: prints ok/FAIL
  local what=$1; shift
  if "$@"; then echo "  ok: $what"; else echo "  FAIL: $what"; fails=$((fails + 1)); fi
}

echo "== apt install ./$debname in a fresh bookworm chroot ($root)"
in_root apt-get update -qq
in_root apt-get install -y -q "/tmp/$debname" | grep -E '^(Setting up|modelfs:|Unpacking)' || true
check "installed: dpkg -s modelfs" in_root dpkg -s modelfs >/dev/null

echo "== files (dpkg -L modelfs)"
in_root dpkg -L modelfs | sed 's/^/  /'
expected_file() {
  case $1 in
    /usr/bin/modelfs|/usr/sbin/mount.fuse.modelfs|/usr/libexec/modelfs/modelfs-service-helper) ;;
    /lib/systemd/system/modelfs.service|/etc/modelfs/modelfs.conf) ;;
    /usr/share/doc/modelfs/*) ;;
    *) return 1 ;;
  esac
}
all_expected() {
  local f bad=0
  while read -r f; do
    [ -d "$root$f" ] && continue
    expected_file "$f" || { echo "  unexpected file: $f"; bad=1; }
  done < <(in_root dpkg -L modelfs)
  return $bad
}
check "every file is in a Debian place (/usr/bin, /usr/sbin, /usr/libexec/modelfs, /lib/systemd/system, /etc/modelfs, /usr/share/doc/modelfs)" all_expected
check "nothing in /usr/local, /opt or /mnt" bash -c "! chroot '$root' dpkg -L modelfs | grep -Eq '^/(usr/local|opt|mnt)(/|$)'"
check "doc: copyright and changelog.gz" test -f "$root/usr/share/doc/modelfs/copyright" -a -f "$root/usr/share/doc/modelfs/changelog.gz"
check "conffile: /etc/modelfs/modelfs.conf" bash -c "chroot '$root' dpkg-query -W -f='\${Conffiles}' modelfs | grep -q '^ /etc/modelfs/modelfs.conf '"

echo "== it runs"
out=$(in_root modelfs --version)
check "modelfs --version = 'modelfs ${version%%-*}' (got '$out')" test "$out" = "modelfs ${version%%-*}"
check "no missing shared library" bash -c "! chroot '$root' ldd /usr/bin/modelfs | grep -q 'not found'"
check "mount(8) finds /sbin/mount.fuse.modelfs (merged /usr)" test -x "$root/sbin/mount.fuse.modelfs"
helper_out=$(in_root /sbin/mount.fuse.modelfs modelfs /mnt/models -f \
  -o rw,allow_other,cache_dir=/var/cache/modelfs,cache_size=500G,_netdev -t fuse.modelfs 2>&1)
echo "  $helper_out"
check "the fstab line's options become modelfs flags, run as the modelfs user" \
  bash -c "grep -q -- '--reuid=modelfs' <<<\"\$1\" && grep -q -- 'mount /mnt/models --allow-other --cache-dir /var/cache/modelfs --cache-size 500G --config /etc/modelfs/modelfs.conf' <<<\"\$1\" && ! grep -q _netdev <<<\"\$1\"" _ "$helper_out"

echo "== system state after install"
pw=$(in_root getent passwd modelfs || true)
echo "  $pw"
uid=$(cut -d: -f3 <<<"$pw")
check "system user modelfs (uid < 1000, nologin, no home)" bash -c "[ -n '$uid' ] && [ '$uid' -lt 1000 ] && [ '$(cut -d: -f7 <<<"$pw")' = /usr/sbin/nologin ] && [ '$(cut -d: -f6 <<<"$pw")' = /nonexistent ]"
check "group modelfs" in_root getent group modelfs >/dev/null
st=$(in_root stat -c '%U:%G %a' /var/cache/modelfs)
check "/var/cache/modelfs is modelfs:modelfs 0700 (got $st)" test "$st" = "modelfs:modelfs 700"
check "user_allow_other in /etc/fuse.conf" grep -Eq '^user_allow_other$' "$root/etc/fuse.conf"
check "the service is neither enabled nor started by the install" \
  test ! -e "$root/etc/systemd/system/multi-user.target.wants/modelfs.service"

echo "== the unit (systemd-analyze verify, offline)"
verify=$(in_root systemd-analyze verify /lib/systemd/system/modelfs.service 2>&1 || echo "exit $?")
[ -z "$verify" ] || echo "$verify" | sed 's/^/  /'
check "systemd-analyze verify modelfs.service is clean" test -z "$verify"
in_root systemd-analyze security --offline=true /lib/systemd/system/modelfs.service 2>/dev/null |
  tail -n 1 | sed 's/^/  security (informational): /' || true

echo "== reinstall fixes an open token file"
printf 'hf_example\n' >"$root/etc/modelfs/token"
chmod 0644 "$root/etc/modelfs/token"
in_root apt-get install -y -q --reinstall "/tmp/$debname" >/dev/null
st=$(in_root stat -c '%U:%G %a' /etc/modelfs/token)
check "/etc/modelfs/token is modelfs:modelfs 0600 (got $st)" test "$st" = "modelfs:modelfs 600"
printf '# edited by the admin\n' >>"$root/etc/modelfs/modelfs.conf"

echo "== remove, then purge"
in_root apt-get remove -y -q modelfs >/dev/null
check "remove: the binary is gone" test ! -e "$root/usr/bin/modelfs"
check "remove: the edited config stays" grep -q 'edited by the admin' "$root/etc/modelfs/modelfs.conf"
in_root apt-get purge -y -q modelfs >/dev/null
check "purge: /etc/modelfs is gone (config and token)" test ! -e "$root/etc/modelfs"
check "purge: /var/cache/modelfs is gone" test ! -e "$root/var/cache/modelfs"
check "purge: dpkg forgot the package" bash -c "! chroot '$root' dpkg -s modelfs >/dev/null 2>&1"

if command -v lintian >/dev/null; then
  echo "== lintian (on the host; informational)"
  lintian --no-tag-display-limit "$deb" 2>&1 | sed 's/^/  /' || true
fi

if [ $fails -gt 0 ]; then
  echo "test-install: $fails check(s) failed"
  exit 1
fi
echo "test-install: all checks passed in a fresh Debian 12 chroot"
