// The mount's config file (/etc/modelfs/modelfs.conf): "key = value" lines, '#' comments.
// The same keys are accepted as libfuse-style "-o key=value" options, which is how an fstab
// line reaches `modelfs mount`.
#pragma once

#include <map>
#include <string>

namespace modelfs::cli {

using ConfigMap = std::map<std::string, std::string>;

// false with *error ("FILE:LINE: ...") on a malformed line or an unreadable file.
bool ReadConfigFile(const std::string& path, ConfigMap* out, std::string* error);

// Keys the mount understands (config file and -o).
bool IsMountKey(const std::string& key);
// Options of mount(8)/fstab that mean nothing to modelfs and must not reach libfuse.
bool IsIgnoredMountOption(const std::string& key);

bool ParseBool(const std::string& value, bool* out);

}  // namespace modelfs::cli
