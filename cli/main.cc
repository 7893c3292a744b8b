// modelfs: Hugging Face Hub repos as a lazy, cached local filesystem.
#include <spdlog/spdlog.h>

#include <CLI/CLI.hpp>
#include <map>

#include "cli/commands.h"
#include "cli/settings.h"

int main(int argc, char** argv) {
  using namespace modelfs::cli;
  CLI::App app{
      "modelfs: Hugging Face Hub repos as lazy local files, backed by a persistent chunk cache.\n"
      "  modelfs mount /mnt/models        # then: ls /mnt/models/<org>/<name>/\n"
      "  modelfs umount /mnt/models"};
  app.set_version_flag("--version", "modelfs 0.1.0");
  app.require_subcommand(1);
  std::map<CLI::App*, Runner> runners;
  runners[nullptr] = nullptr;
  auto add = [&](Runner (*fn)(CLI::App&)) {
    size_t before = app.get_subcommands({}).size();
    Runner r = fn(app);
    runners[app.get_subcommands({})[before]] = r;
  };
  add(AddMountCommand);
  add(AddUmountCommand);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? kExitOk : kExitUsage;
  }
  for (CLI::App* sub : app.get_subcommands()) {
    if (auto it = runners.find(sub); it != runners.end() && it->second) return it->second();
  }
  return kExitUsage;
}
