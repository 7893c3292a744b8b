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
hubpid="" fuse_mode=""
cleanup() {
  [ -z "$hubpid" ] || kill "$hubpid" 2>/dev/null || true
  [ -z "$fuse_mode" ] || chmod "$fuse_mode" /dev/fuse
  # Every mount under the chroot, innermost first (a FUSE mount, /dev/pts, /dev, /proc).
  findmnt -rn -o TARGET | grep -F "$root/" | sort -r | while read -r m; do umount -l "$m"; done
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
    /usr/share/man/man1/modelfs.1.gz|/usr/share/bash-completion/completions/modelfs) ;;
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
check "every file is in a Debian place (/usr/bin, /usr/sbin, /usr/libexec/modelfs, /lib/systemd/system, /etc/modelfs, /usr/share/doc/modelfs, /usr/share/man/man1, /usr/share/bash-completion/completions)" all_expected
check "nothing in /usr/local, /opt or /mnt" bash -c "! chroot '$root' dpkg -L modelfs | grep -Eq '^/(usr/local|opt|mnt)(/|$)'"
check "doc: copyright and changelog.gz" test -f "$root/usr/share/doc/modelfs/copyright" -a -f "$root/usr/share/doc/modelfs/changelog.gz"
check "man page: /usr/share/man/man1/modelfs.1.gz (gzip)" \
  bash -c "gzip -t '$root/usr/share/man/man1/modelfs.1.gz' && zcat '$root/usr/share/man/man1/modelfs.1.gz' | grep -q '^\.TH MODELFS 1 '"
if command -v groff >/dev/null; then
  check "man page: renders without warnings (groff -man -ww on the host)" \
    bash -c "zcat '$root/usr/share/man/man1/modelfs.1.gz' | groff -man -ww -z 2>&1 | { ! grep -q .; }"
fi
check "bash completion: sourcing it registers a function for modelfs" \
  in_root bash -c 'source /usr/share/bash-completion/completions/modelfs && complete -p modelfs | grep -q -- "-F _modelfs modelfs"'
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

fixtures=${MODELFS_FIXTURES:-$src/build/fixtures}
if [ -f "$fixtures/manifest.json" ] && command -v python3 >/dev/null; then
  echo "== the installed files mount: mount -t fuse.modelfs in the chroot, hub simulator on 127.0.0.1"
  ready=$root.hub.json
  python3 "$src/tests/hubsim/hubsim.py" --fixtures "$fixtures" --port 0 --cdn-port 0 \
    --ready-file "$ready" >"$root.hub.log" 2>&1 &
  hubpid=$!
  for _ in $(seq 300); do [ -s "$ready" ] && break; sleep 0.1; done
  url=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["hub"])' "$ready")
  mode=$(stat -c %a /dev/fuse)
  if [ "$((0$mode & 06))" != 6 ]; then  # no udev on this host
    fuse_mode=$mode
    chmod 0666 /dev/fuse
    echo "  /dev/fuse was $mode here (no udev); 0666 for the test, as udev makes it"
  fi
  sed -i "s|^endpoint = .*|endpoint = $url|" "$root/etc/modelfs/modelfs.conf"
  mkdir -p "$root/mnt/models"
  if ! in_root mount -t fuse.modelfs modelfs /mnt/models -o allow_other,cache_size=1G,_netdev; then
    tail -n 20 "$root/var/cache/modelfs/modelfs.log" 2>/dev/null || true
  fi
  opts=$(findmnt -n -o FSTYPE,OPTIONS --mountpoint "$root/mnt/models" || true)
  echo "  $opts"
  check "mounted as the modelfs user, allow_other, default_permissions" \
    bash -c "grep -q '^fuse.modelfs .*user_id=$uid,.*default_permissions,allow_other' <<<'$opts'"
  want=$(python3 -c 'import json, sys
m = json.load(open(sys.argv[1]))["repos"]["modelfs-test/tiny-safetensors"]
print([f["sha256"] for f in m["commits"][m["branches"]["main"]]["files"] if f["path"] == "model.safetensors"][0])' "$fixtures/manifest.json")
  got=$(in_root setpriv --reuid=nobody --regid=nogroup --clear-groups \
    sha256sum /mnt/models/modelfs-test/tiny-safetensors/model.safetensors | cut -d' ' -f1)
  check "user nobody reads a model through it, byte-exact" test "$got" = "$want"
  in_root setpriv --reuid=nobody --regid=nogroup --clear-groups \
    modelfs gc --socket /run/modelfs/control.sock >/dev/null 2>&1 && rc=0 || rc=$?
  check "user nobody may not gc (exit $rc, want 4)" test "$rc" = 4
  check "root may gc" in_root modelfs gc --socket /run/modelfs/control.sock
  check "umount /mnt/models" in_root umount /mnt/models
  check "nothing left mounted" bash -c "! findmnt --mountpoint '$root/mnt/models' >/dev/null"
  kill "$hubpid" 2>/dev/null || true
  wait "$hubpid" 2>/dev/null || true
  hubpid=""
  rm -f "$ready" "$root.hub.log"
  sed -i "s|^endpoint = .*|endpoint = https://huggingface.co|" "$root/etc/modelfs/modelfs.conf"
else
  echo "== (no mount in the chroot: no fixtures in $fixtures; build the tree and run ctest -R prepare_fixtures)"
fi

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
  lintian --tag-display-limit 0 "$deb" 2>&1 | sed 's/^/  /' || true
fi

if [ $fails -gt 0 ]; then
  echo "test-install: $fails check(s) failed"
  exit 1
fi
echo "test-install: all checks passed in a fresh Debian 12 chroot"
