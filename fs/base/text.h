// Small ASCII text helpers shared by the parsers (HTTP headers, Hub JSON, content ids).
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace modelfs {

std::string AsciiLower(std::string_view s);
bool EqualsIgnoreCase(std::string_view a, std::string_view b);
// Without leading spaces and tabs and trailing spaces, tabs, CR and LF (HTTP field values).
std::string_view TrimSpace(std::string_view s);

// Lowercase hex of n bytes.
std::string HexEncode(const unsigned char* data, size_t n);
// Value of one hex digit (either case), or -1.
int HexDigit(char c);
bool IsHex(std::string_view s);       // digits of either case, possibly empty
bool IsLowerHex(std::string_view s);  // 0-9a-f only, possibly empty

}  // namespace modelfs
