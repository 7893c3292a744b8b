// modelfs: Hugging Face Hub repos as a lazy, cached local filesystem.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <exception>
#include <map>

#include "cli/commands.h"
#include "cli/settings.h"
#include "fs/base/version.h"

namespace {

int Run(int argc, char** argv) {
  using namespace modelfs::cli;
  CLI::App app{
      "modelfs: Hugging Face Hub repos as lazy local files, backed by a persistent chunk cache.\n"
      "  modelfs mount /mnt/models          then: ls /mnt/models/<org>/<name>[@revision]/\n"
      "  modelfs prefetch org/name          warm the cache (pin: and keep it)\n"
      "  modelfs prefetch org/name --detach a download job in the mount; modelfs jobs\n"
      "  modelfs ls | info | stats | gc | rm | verify\n"
      "Exit codes: 0 ok, 1 error, 2 usage, 3 not found, 4 no access, 5 network, 6 no space,\n"
      "130 interrupted."};
  app.set_version_flag("--version", "modelfs " MODELFS_VERSION);
  app.require_subcommand(1);
  std::vector<Runner> runners = {AddMountCommand(app), AddUmountCommand(app)};
  for (auto& r : AddCacheCommands(app)) runners.push_back(std::move(r));
  std::map<CLI::App*, Runner> by_cmd;
  auto subs = app.get_subcommands({});
  for (size_t i = 0; i < subs.size() && i < runners.size(); ++i) by_cmd[subs[i]] = runners[i];
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? kExitOk : kExitUsage;
  }
  for (CLI::App* sub : app.get_subcommands()) {
    if (auto it = by_cmd.find(sub); it != by_cmd.end()) return it->second();
  }
  return kExitUsage;
}

}  // namespace

// An exception that escapes a command (a bug, or out of memory) ends it with a message and
// exit code 1, not with std::terminate's abort.
int main(int argc, char** argv) {
  try {
    return Run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "modelfs: internal error: %s\n", e.what());
  } catch (...) {
    std::fprintf(stderr, "modelfs: internal error\n");
  }
  return modelfs::cli::kExitError;
}
