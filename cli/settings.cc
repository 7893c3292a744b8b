#include "cli/settings.h"

#include <pwd.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <sstream>

namespace modelfs::cli {
namespace {

std::string Env(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}

std::string Home() {
  std::string home = Env("HOME");
  if (!home.empty()) return home;
  if (passwd* pw = getpwuid(getuid())) return pw->pw_dir;
  return "/";
}

bool ReadTokenFile(const std::string& path, std::string* token) {
  std::ifstream in(path);
  if (!in) return false;
  std::stringstream ss;
  ss << in.rdbuf();
  std::string t = ss.str();
  auto not_space = [](unsigned char c) { return !std::isspace(c); };
  t.erase(t.begin(), std::find_if(t.begin(), t.end(), not_space));
  t.erase(std::find_if(t.rbegin(), t.rend(), not_space).base(), t.end());
  *token = t;
  return true;
}

}  // namespace

std::string DefaultCacheDir() {
  std::string dir = Env("MODELFS_CACHE_DIR");
  return dir.empty() ? Home() + "/.cache/modelfs" : dir;
}

bool CacheDirFromEnv() {
  return !Env("MODELFS_CACHE_DIR").empty();
}

std::string SystemConfigPath() {
  std::string p = Env("MODELFS_CONFIG");
  return p.empty() ? "/etc/modelfs/modelfs.conf" : p;
}

std::string RunDir() {
  std::string d = Env("MODELFS_RUN_DIR");
  while (d.size() > 1 && d.back() == '/') d.pop_back();
  return d.empty() ? "/run/modelfs" : d;
}

std::string DefaultEndpoint() {
  std::string e = Env("HF_ENDPOINT");
  if (e.empty()) e = "https://huggingface.co";
  while (!e.empty() && e.back() == '/') e.pop_back();
  return e;
}

std::vector<std::string> EndpointList(const std::vector<std::string>& given) {
  std::vector<std::string> out;
  for (const auto& g : given) {
    size_t start = 0;
    while (start <= g.size()) {
      const size_t comma = std::min(g.find(',', start), g.size());
      std::string e = g.substr(start, comma - start);
      e.erase(0, e.find_first_not_of(" \t"));
      e.erase(e.find_last_not_of(" \t") + 1);
      while (e.size() > 1 && e.back() == '/') e.pop_back();
      if (!e.empty()) out.push_back(std::move(e));
      start = comma + 1;
    }
  }
  if (out.empty()) out.push_back(DefaultEndpoint());
  return out;
}

bool EnvOffline() {
  std::string v = Env("HF_HUB_OFFLINE");
  std::transform(v.begin(), v.end(), v.begin(), ::tolower);
  return v == "1" || v == "true" || v == "yes" || v == "on";
}

bool ResolveToken(const std::string& token_file, Token* out, std::string* error) {
  if (!token_file.empty()) {
    if (!ReadTokenFile(token_file, &out->value)) {
      *error = "cannot read the token file " + token_file;
      return false;
    }
    out->source = "--token-file " + token_file;
    return true;
  }
  if (std::string t = Env("HF_TOKEN"); !t.empty()) {
    *out = {t, "HF_TOKEN"};
    return true;
  }
  if (std::string p = Env("HF_TOKEN_PATH"); !p.empty() && ReadTokenFile(p, &out->value)) {
    out->source = "HF_TOKEN_PATH " + p;
    return true;
  }
  std::string hf_home = Env("HF_HOME");
  if (hf_home.empty()) hf_home = Home() + "/.cache/huggingface";
  if (ReadTokenFile(hf_home + "/token", &out->value) && !out->value.empty()) {
    out->source = hf_home + "/token";
    return true;
  }
  *out = {"", "none"};
  return true;
}

}  // namespace modelfs::cli
