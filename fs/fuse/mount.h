// What a FUSE mount needs from the system besides /dev/fuse: finding its device in
// /proc/self/mountinfo, raising the kernel's readahead for it (sysfs), and unmounting through
// fusermount3. Kept apart from the request handlers in adapter.cc.
#pragma once

#include <string>
#include <string_view>

#include "fs/base/status.h"

namespace modelfs::fs {

// The "major:minor" of the last (topmost) mount at mountpoint in a mountinfo text, or "".
// Mount points are compared after decoding mountinfo's \ooo escapes.
std::string MountDevice(std::string_view mountinfo, const std::string& mountpoint);

// Sets /sys/class/bdi/<dev>/read_ahead_kb to at least want_kb for the mount at real_mountpoint
// (root only; otherwise logs why not). Reads /proc/self/mountinfo, never stat()s the mount point:
// that would wait for the very process that serves it.
void RaiseKernelReadahead(const std::string& real_mountpoint, unsigned want_kb);

// Unmounts a modelfs mount point (fusermount3 -u).
Status Unmount(const std::string& mountpoint);

}  // namespace modelfs::fs
