#!/bin/sh
# Renders site-cache.conf.in into an nginx config file (to stdout).
#   render.sh [--hub URL] [--listen ADDR] [--cache-dir DIR] [--log-dir DIR] [--resolver IPS]
#             [--max-size SIZE] [--files-max-size SIZE] [--branch-ttl TIME] [--ca-file FILE]
set -eu
here=$(dirname "$0")
hub=https://huggingface.co
listen=8080
cache_dir=/var/cache/nginx/site-cache
log_dir=/var/log/nginx
resolver=$(awk '$1 == "nameserver" { printf "%s%s", sep, $2; sep = " " }' /etc/resolv.conf 2>/dev/null || true)
max_size=500g
files_max_size=10g
branch_ttl=10s
ca_file=/etc/ssl/certs/ca-certificates.crt
while [ $# -gt 0 ]; do
  case $1 in
    --hub) hub=${2%/} ;;
    --listen) listen=$2 ;;
    --cache-dir) cache_dir=${2%/} ;;
    --log-dir) log_dir=${2%/} ;;
    --resolver) resolver=$2 ;;
    --max-size) max_size=$2 ;;
    --files-max-size) files_max_size=$2 ;;
    --branch-ttl) branch_ttl=$2 ;;
    --ca-file) ca_file=$2 ;;
    -h|--help) sed -n '2,4p' "$0"; exit 0 ;;
    *) echo "render.sh: unknown option $1" >&2; exit 2 ;;
  esac
  shift 2
done
[ -n "$resolver" ] || resolver=127.0.0.53
case $hub in
  http://*|https://*) ;;
  *) echo "render.sh: --hub must be an http:// or https:// URL" >&2; exit 2 ;;
esac
# '|' cannot appear in any of these values (URLs, paths, sizes)
exec sed -e "s|@HUB@|$hub|g" -e "s|@LISTEN@|$listen|g" -e "s|@CACHE_DIR@|$cache_dir|g" \
  -e "s|@LOG_DIR@|$log_dir|g" -e "s|@RESOLVER@|$resolver|g" -e "s|@MAX_SIZE@|$max_size|g" \
  -e "s|@FILES_MAX_SIZE@|$files_max_size|g" -e "s|@BRANCH_TTL@|$branch_ttl|g" \
  -e "s|@CA_FILE@|$ca_file|g" "$here/site-cache.conf.in"
