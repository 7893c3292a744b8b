// Subcommands of `modelfs`. Each registers its options on the app and returns a runner that
// gives the process exit code (see settings.h).
#pragma once

#include <CLI/CLI.hpp>
#include <functional>
#include <vector>

namespace modelfs::cli {

using Runner = std::function<int()>;

Runner AddMountCommand(CLI::App& app);
Runner AddUmountCommand(CLI::App& app);
// prefetch, pin, unpin, ls, info, stats, gc, rm, verify: one runner per subcommand, in order.
std::vector<Runner> AddCacheCommands(CLI::App& app);

}  // namespace modelfs::cli
