#!/usr/bin/env bash
# Installs what building modelfs needs on Debian 12 (only what is missing).
#   packaging/install-deps.sh          build dependencies
#   packaging/install-deps.sh --test   also what the tests need: Python 3, clang with libFuzzer,
#                                      clang-format and clang-tidy (tests/lint.sh),
#                                      Node.js >= 20 and the pinned npm clients in tests/node
#                                      (node-llama-cpp, @huggingface/hub, transformers.js),
#                                      nginx with its Lua module (the site cache's test)
#   packaging/install-deps.sh --package  also what packaging/build-deb.sh and
#                                      packaging/test-install.sh need (dpkg-dev, debootstrap)
set -euo pipefail
cd "$(dirname "$0")/.."

want=(g++ cmake ninja-build pkg-config fuse3 libfuse3-dev libcurl4-openssl-dev libsqlite3-dev
      libxxhash-dev libssl-dev libspdlog-dev nlohmann-json3-dev libcli11-dev libgtest-dev)
test_mode=0
if [ "${1:-}" = "--package" ]; then
  want+=(dpkg-dev debootstrap)
fi
if [ "${1:-}" = "--test" ]; then
  test_mode=1
  # clang plus its libFuzzer/sanitizer runtime (only recommended by clang-14): tests/fuzz/run.sh
  # groff-base and man-db: tests/e2e/test_manpage.py renders the man page with groff and man.
  # nginx + its Lua module: tests/e2e/test_site_cache.py runs packaging/site-cache/.
  want+=(python3 git attr tmux curl ca-certificates clang libclang-rt-14-dev clang-format clang-tidy
         groff-base man-db nginx libnginx-mod-http-lua)
  command -v node >/dev/null || want+=(nodejs npm)
fi

missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}"
  sudo_cmd=()
  [ "$(id -u)" = 0 ] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

if [ $test_mode = 1 ]; then
  major=$(node -p 'process.versions.node.split(".")[0]')
  if [ "$major" -lt 20 ]; then
    echo "install-deps: node-llama-cpp needs Node.js >= 20, this machine has $(node --version)" >&2
    exit 1
  fi
  # Skipped when node_modules already matches the lock file.
  stamp=tests/node/node_modules/.modelfs-lock
  if ! cmp -s tests/node/package-lock.json "$stamp" 2>/dev/null; then
    # npm install, not npm ci: the lock omits the other platforms' optional binaries, which
    # npm ci would insist on; versions are pinned exactly in package.json and the lock.
    # onnxruntime-node (under transformers.js) ships its CPU binaries; its install script would
    # fetch CUDA ones from a NuGet feed, outside the npm registry.
    (cd tests/node && ONNXRUNTIME_NODE_INSTALL=skip \
      npm install --omit=optional --no-audit --no-fund --loglevel=error)
    cp tests/node/package-lock.json "$stamp"
  fi
fi
echo "install-deps: ok"
