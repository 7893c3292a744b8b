#include "cli/config.h"

#include <algorithm>
#include <fstream>
#include <set>

namespace modelfs::cli {
namespace {

std::string Trim(const std::string& s) {
  size_t a = s.find_first_not_of(" \t\r");
  if (a == std::string::npos) return "";
  size_t b = s.find_last_not_of(" \t\r");
  return s.substr(a, b - a + 1);
}

}  // namespace

bool IsMountKey(const std::string& key) {
  static const std::set<std::string> keys = {
      "cache_dir",      "cache_size",   "endpoint",          "token_file",    "admin_group",
      "allow_other",    "log_level",    "control_socket",    "metrics",       "allow",
      "deny",           "refuse_gated", "revision_ttl",      "read_timeout",  "offline",
      "strict_verify",  "config",       "mountpoint",        "fetch_threads", "readahead_max",
      "model_prefetch", "max_jobs",     "keep_finished_jobs"};
  return keys.count(key) != 0;
}

bool IsIgnoredMountOption(const std::string& key) {
  static const std::set<std::string> keys = {"_netdev", "nofail", "noauto", "auto",   "defaults",
                                             "rw",      "ro",     "user",   "users",  "nouser",
                                             "dev",     "nodev",  "suid",   "nosuid", "exec",
                                             "noexec",  "owner",  "group",  "comment"};
  return keys.count(key) != 0 || key.rfind("x-", 0) == 0;
}

bool ParseBool(const std::string& value, bool* out) {
  std::string v = value;
  std::transform(v.begin(), v.end(), v.begin(), ::tolower);
  if (v == "1" || v == "true" || v == "yes" || v == "on" || v.empty()) return *out = true, true;
  if (v == "0" || v == "false" || v == "no" || v == "off") return *out = false, true;
  return false;
}

bool ReadConfigFile(const std::string& path, ConfigMap* out, std::string* error) {
  std::ifstream in(path);
  if (!in) {
    *error = "cannot read the config file " + path;
    return false;
  }
  std::string line;
  for (int n = 1; std::getline(in, line); ++n) {
    std::string t = Trim(line.substr(0, line.find('#')));
    if (t.empty()) continue;
    size_t eq = t.find('=');
    std::string key = eq == std::string::npos ? "" : Trim(t.substr(0, eq));
    if (key.empty()) {
      *error = path + ":" + std::to_string(n) + ": expected 'key = value'";
      return false;
    }
    if (!IsMountKey(key)) {
      *error = path;
      error->append(":")
          .append(std::to_string(n))
          .append(": unknown key '")
          .append(key)
          .append("'");
      return false;
    }
    (*out)[key] = Trim(t.substr(eq + 1));
  }
  return true;
}

}  // namespace modelfs::cli
