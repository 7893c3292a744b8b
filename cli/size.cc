#include "cli/size.h"

#include <cctype>
#include <cmath>
#include <cstdio>

namespace modelfs::cli {

std::optional<uint64_t> ParseSize(std::string_view text) {
  size_t i = 0;
  while (i < text.size() && (std::isdigit(static_cast<unsigned char>(text[i])) || text[i] == '.'))
    ++i;
  std::string number(text.substr(0, i));
  if (number.empty() || number == "." || number.find('.') != number.rfind('.')) return std::nullopt;
  std::string unit;
  for (char c : text.substr(i))
    unit.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
  if (unit.size() > 1 && unit.back() == 'b') unit.pop_back();  // "gb", "gib" -> "g", "gi"
  if (unit.size() > 1 && unit.back() == 'i') unit.pop_back();
  int shift = 0;
  if (unit.empty() || unit == "b")
    shift = 0;
  else if (unit == "k")
    shift = 10;
  else if (unit == "m")
    shift = 20;
  else if (unit == "g")
    shift = 30;
  else if (unit == "t")
    shift = 40;
  else if (unit == "p")
    shift = 50;
  else
    return std::nullopt;
  double value = std::strtod(number.c_str(), nullptr);
  double bytes = std::ldexp(value, shift);
  if (!std::isfinite(bytes) || bytes >= 9.2e18) return std::nullopt;
  return static_cast<uint64_t>(bytes);
}

std::string FormatSize(uint64_t bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
  double v = static_cast<double>(bytes);
  int u = 0;
  while (v >= 1024 && u < 5) {
    v /= 1024;
    ++u;
  }
  char buf[32];
  if (u == 0)
    std::snprintf(buf, sizeof buf, "%llu B", static_cast<unsigned long long>(bytes));
  else
    std::snprintf(buf, sizeof buf, "%.1f %s", v, units[u]);
  return buf;
}

}  // namespace modelfs::cli
