// Human sizes: "500M", "20G", "1.5T", "4096", "10GiB", "2gb". Binary units (K = 1024).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace modelfs::cli {

std::optional<uint64_t> ParseSize(std::string_view text);
std::string FormatSize(uint64_t bytes);  // "1.5 GiB"

}  // namespace modelfs::cli
