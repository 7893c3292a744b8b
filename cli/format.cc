#include "cli/format.h"

#include <cstdio>

namespace modelfs::cli {

using nlohmann::json;

std::string FormatCount(uint64_t n) {
  char buf[32];
  if (n >= 1000000000ull)
    std::snprintf(buf, sizeof buf, "%.2fB", static_cast<double>(n) / 1e9);
  else if (n >= 1000000ull)
    std::snprintf(buf, sizeof buf, "%.2fM", static_cast<double>(n) / 1e6);
  else if (n >= 1000ull)
    std::snprintf(buf, sizeof buf, "%.1fK", static_cast<double>(n) / 1e3);
  else
    std::snprintf(buf, sizeof buf, "%llu", static_cast<unsigned long long>(n));
  return buf;
}

std::string ModelSummary(const json& m) {
  if (!m.is_object()) return "";
  std::string out = m.value("format", "") + ": ";
  if (const std::string arch = m.value("architecture", ""); !arch.empty())
    out += "architecture " + arch + ", ";
  out += FormatCount(m.value("parameters", uint64_t{0})) + " parameters, ";
  out += std::to_string(m.value("tensors", uint64_t{0})) + " tensors (";
  std::string dtypes;
  if (auto it = m.find("dtypes"); it != m.end() && it->is_array()) {
    for (const auto& d : *it) {
      if (!d.is_object()) continue;
      dtypes += (dtypes.empty() ? "" : ", ") + d.value("dtype", "") + " x" +
                std::to_string(d.value("tensors", 0));
    }
  }
  out += dtypes + ")";
  if (const auto ctx = m.value("context_length", uint64_t{0}); ctx != 0)
    out += ", context " + std::to_string(ctx);
  if (const std::string ft = m.value("file_type", ""); !ft.empty()) out += ", " + ft;
  return out;
}

}  // namespace modelfs::cli
