// Where settings come from when no flag gives them: the environment, as the Hub's own client
// reads it (HF_ENDPOINT, HF_TOKEN, HF_TOKEN_PATH, HF_HOME, HF_HUB_OFFLINE), then defaults.
#pragma once

#include <string>
#include <vector>

namespace modelfs::cli {

// Exit codes every command uses, so scripts can tell failures apart.
enum Exit : int {
  kExitOk = 0,
  kExitError = 1,     // anything else
  kExitUsage = 2,     // bad arguments
  kExitNotFound = 3,  // no such repo, revision or file
  kExitNoAccess = 4,  // private or gated, or not allowed to do this
  kExitNetwork = 5,   // the Hub could not be reached in time
  kExitNoSpace = 6,   // the cache limit or the disk is too small
};

std::string DefaultCacheDir();  // $MODELFS_CACHE_DIR, else ~/.cache/modelfs
bool CacheDirFromEnv();         // $MODELFS_CACHE_DIR is set: the user chose a cache
// Where the machine's mount is looked for by the CLI (and, for RunDir, where a root
// --allow-other mount puts its socket). Tests point them elsewhere.
std::string SystemConfigPath();  // $MODELFS_CONFIG, else /etc/modelfs/modelfs.conf
std::string RunDir();            // $MODELFS_RUN_DIR, else /run/modelfs
std::string DefaultEndpoint();   // $HF_ENDPOINT without trailing '/', else https://huggingface.co
// The endpoints to use, in order: the given ones (each maybe "a, b"; trailing '/' dropped), or
// DefaultEndpoint() when none is given.
std::vector<std::string> EndpointList(const std::vector<std::string>& given);
bool EnvOffline();  // HF_HUB_OFFLINE set to 1/true/yes/on

struct Token {
  std::string value;   // never logged
  std::string source;  // "--token-file /x", "HF_TOKEN", ..., or "none"
};
// token_file (if given) must be readable; otherwise HF_TOKEN, HF_TOKEN_PATH, $HF_HOME/token.
bool ResolveToken(const std::string& token_file, Token* out, std::string* error);

}  // namespace modelfs::cli
