#!/usr/bin/env bash
# Builds the Debian package from the tree, in one command:
#   packaging/build-deb.sh            -> build-pkg/modelfs_<version>_<arch>.deb
# Release build (with Debian's hardening flags) in build-pkg/, `cmake --install` staged with
# DESTDIR, the packaging files added where Debian keeps them, Depends computed by
# dpkg-shlibdeps, then dpkg-deb. Needs dpkg-dev (packaging/install-deps.sh --package).
# Environment: MODELFS_DEB_VERSION overrides the version (default: project() in CMakeLists.txt),
# MODELFS_MAINTAINER the Maintainer field (default: the last commit's author), MODELFS_PKG_DIR
# the build folder (default build-pkg).
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
cd "$src"
out=${MODELFS_PKG_DIR:-$src/build-pkg}
pkg=$src/packaging

for tool in cmake ninja dpkg-deb dpkg-shlibdeps dpkg-buildflags; do
  command -v "$tool" >/dev/null || { echo "build-deb: $tool is missing; run packaging/install-deps.sh --package" >&2; exit 1; }
done

version=${MODELFS_DEB_VERSION:-$(sed -nE 's/^project\(modelfs VERSION ([0-9][0-9.]*).*/\1/p' CMakeLists.txt)}
[ -n "$version" ] || { echo "build-deb: no version in CMakeLists.txt" >&2; exit 1; }
arch=$(dpkg --print-architecture)
# The package's maintainer: MODELFS_MAINTAINER, else the author of the last commit.
maintainer=${MODELFS_MAINTAINER:-$(git -C "$src" log -1 --format='%an <%ae>' 2>/dev/null || true)}
maintainer=${maintainer:-modelfs maintainers <modelfs@localhost>}
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git -C "$src" log -1 --format=%ct 2>/dev/null || date +%s)}

# Debian's compiler and linker flags: fortify, stack protector, relro and bindnow.
export DEB_BUILD_MAINT_OPTIONS=hardening=+all
eval "$(dpkg-buildflags --export=sh)"
# Given as cache variables (not only in the environment, which CMake reads only when it first
# configures a folder), so a rebuild in the same folder uses them too.
# Release, at Debian's -O2 rather than CMake's -O3 (what Debian builds use; the README's test
# command builds and tests Release at -O3, warnings as errors).
cmake -S "$src" -B "$out" -G Ninja -DCMAKE_BUILD_TYPE=Release "-DCMAKE_CXX_FLAGS_RELEASE=-O2 -DNDEBUG" \
  "-DCMAKE_CXX_FLAGS=$CPPFLAGS $CXXFLAGS" "-DCMAKE_EXE_LINKER_FLAGS=$LDFLAGS" \
  -DMODELFS_TESTS=OFF -DCMAKE_INSTALL_PREFIX=/usr
cmake --build "$out"

stage=$out/stage
rm -rf "$stage"
DESTDIR=$stage cmake --install "$out" --prefix /usr --strip
# cmake --install put the man page in /usr/share/man/man1 and the bash completion in
# /usr/share/bash-completion/completions; Debian keeps man pages compressed (gzip -9n).
gzip -9nf "$stage/usr/share/man/man1/modelfs.1"
# Packaging files, where Debian 12 keeps them. mount(8) runs /sbin/mount.fuse.<subtype>;
# /sbin is /usr/sbin on Debian 12 (merged /usr). Units of Debian 12 packages are in /lib.
install -D -m 0644 "$pkg/modelfs.service" "$stage/lib/systemd/system/modelfs.service"
install -D -m 0755 "$pkg/mount.fuse.modelfs" "$stage/usr/sbin/mount.fuse.modelfs"
install -D -m 0755 "$pkg/modelfs-service-helper" "$stage/usr/libexec/modelfs/modelfs-service-helper"
install -D -m 0644 "$pkg/modelfs.conf" "$stage/etc/modelfs/modelfs.conf"
doc=$stage/usr/share/doc/modelfs
install -D -m 0644 "$pkg/README.md" "$doc/README.Debian"
install -D -m 0644 README.md "$doc/README.md"
install -D -m 0644 "$pkg/debian/copyright" "$doc/copyright"
cat >"$out/changelog" <<EOF
modelfs ($version) unstable; urgency=medium

  * Built from the modelfs source tree by packaging/build-deb.sh.

 -- $maintainer  $(date -u -R -d "@$SOURCE_DATE_EPOCH")
EOF
gzip -9n <"$out/changelog" >"$doc/changelog.gz"
chmod 0644 "$doc/changelog.gz"

# Depends: the shared libraries the binary links (dpkg-shlibdeps), plus what the scripts run.
mkdir -p "$out/shlibdeps/debian"
printf 'Source: modelfs\n\nPackage: modelfs\nArchitecture: any\n' >"$out/shlibdeps/debian/control"
shlibs=$(cd "$out/shlibdeps" && dpkg-shlibdeps -O "$stage/usr/bin/modelfs" 2>/dev/null |
         sed -n 's/^shlibs:Depends=//p')
[ -n "$shlibs" ] || { echo "build-deb: dpkg-shlibdeps found no libraries" >&2; exit 1; }
# fuse3: fusermount3 and /etc/fuse.conf; adduser: the system user; util-linux (essential)
# has setpriv, findmnt and mountpoint.
depends="$shlibs, fuse3, adduser"

mkdir -p "$stage/DEBIAN"
installed_size=$(du -sk --apparent-size "$stage" | cut -f1)
cat >"$stage/DEBIAN/control" <<EOF
Package: modelfs
Version: $version
Architecture: $arch
Maintainer: $maintainer
Installed-Size: $installed_size
Depends: $depends
Recommends: ca-certificates
Section: utils
Priority: optional
Description: Hugging Face Hub repos as lazy local files (FUSE)
 modelfs mounts the Hugging Face Hub as a read-only filesystem: every model
 repo is a folder (/mnt/models/<org>/<name>[@revision]/) whose files
 are fetched as they are read, and kept in a persistent, size-bounded chunk
 cache shared by every user of the machine.
 .
 The package has the modelfs command with its man page and bash completion,
 a systemd unit (modelfs.service) that mounts /mnt/models as the modelfs
 system user, and a mount helper for /etc/fstab lines of type fuse.modelfs.
EOF
echo /etc/modelfs/modelfs.conf >"$stage/DEBIAN/conffiles"
install -m 0755 "$pkg/debian/postinst" "$pkg/debian/prerm" "$pkg/debian/postrm" "$stage/DEBIAN/"
chmod 0644 "$stage/DEBIAN/control" "$stage/DEBIAN/conffiles"
(cd "$stage" && find . -type f ! -path './DEBIAN/*' -printf '%P\0' | sort -z |
   xargs -0 md5sum) >"$stage/DEBIAN/md5sums"
chmod 0644 "$stage/DEBIAN/md5sums"

deb=$out/modelfs_${version}_${arch}.deb
dpkg-deb --root-owner-group -Zxz --build "$stage" "$deb" >/dev/null
echo "build-deb: $deb"
dpkg-deb --info "$deb" | sed -n 's/^ \(Version\|Depends\|Installed-Size\):/  \1:/p'
