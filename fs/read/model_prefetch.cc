#include "fs/read/model_prefetch.h"

#include <algorithm>
#include <array>
#include <cctype>

#include "fs/base/text.h"

namespace modelfs::fs {
namespace {

constexpr std::array<std::string_view, 8> kModelExtensions = {
    ".gguf", ".safetensors", ".bin", ".pt", ".pth", ".onnx", ".onnx_data", ".ckpt"};

// "dir/model-00002-of-00004.safetensors" -> {"dir/model", "00004", ".safetensors"}.
struct ShardName {
  std::string prefix, total, ext;
  bool ok = false;
};

ShardName ParseShard(std::string_view path) {
  ShardName n;
  const size_t dot = path.rfind('.');
  if (dot == std::string_view::npos) return n;
  const std::string_view stem = path.substr(0, dot);
  // stem ends with "-NNNNN-of-MMMMM" (digits of any count, as the Hub's tools write 5).
  const size_t of = stem.rfind("-of-");
  if (of == std::string_view::npos || of == 0) return n;
  const std::string_view total = stem.substr(of + 4);
  const size_t dash = stem.rfind('-', of - 1);
  if (dash == std::string_view::npos) return n;
  const std::string_view index = stem.substr(dash + 1, of - dash - 1);
  auto digits = [](std::string_view s) {
    return !s.empty() &&
           std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
  };
  if (!digits(total) || !digits(index)) return n;
  n.prefix = std::string(stem.substr(0, dash));
  n.total = std::string(total);
  n.ext = std::string(path.substr(dot));
  n.ok = true;
  return n;
}

}  // namespace

bool IsModelFile(std::string_view path) {
  const std::string lower = AsciiLower(path);
  return std::any_of(kModelExtensions.begin(), kModelExtensions.end(),
                     [&](std::string_view ext) { return lower.ends_with(ext); });
}

bool MayOpenShardSet(std::string_view path) {
  return path.ends_with(".index.json") || ParseShard(path).ok;
}

std::vector<std::string> ShardSet(const std::string& opened,
                                  const std::vector<std::string>& paths) {
  std::string prefix, ext, total;
  if (opened.ends_with(".index.json")) {
    // "dir/model.safetensors.index.json" -> shards "dir/model-*-of-*.safetensors".
    const std::string base =
        opened.substr(0, opened.size() - std::string_view(".index.json").size());
    const size_t dot = base.rfind('.');
    const size_t slash = base.rfind('/');
    if (dot == std::string::npos || (slash != std::string::npos && dot < slash)) return {};
    prefix = base.substr(0, dot);
    ext = base.substr(dot);
  } else {
    ShardName n = ParseShard(opened);
    if (!n.ok) return {};
    prefix = n.prefix;
    ext = n.ext;
    total = n.total;
  }
  std::vector<std::string> shards;
  for (const auto& p : paths) {
    ShardName n = ParseShard(p);
    if (n.ok && n.prefix == prefix && n.ext == ext && (total.empty() || n.total == total)) {
      shards.push_back(p);
    }
  }
  std::sort(shards.begin(), shards.end());  // zero-padded indexes sort in shard order
  return shards;
}

}  // namespace modelfs::fs
