// System calls as Status values: the one place outside the FUSE adapter where errno is read.
// Code that calls the OS turns a failure into a Status here and passes the Status on.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <string>

#include "fs/base/status.h"
#include "fs/base/unique_fd.h"

namespace modelfs {

// ENOSPC and EDQUOT are kNoSpace, ENOENT kNotFound, EACCES/EPERM kNoAccess, the rest kIo.
Status ErrnoStatus(const std::string& what, int err);
// ErrnoStatus for the errno the last failed call left.
Status LastError(const std::string& what);
// The errno the last failed call left (for code that must tell EINTR or ENOENT apart).
int LastErrno();

// Reads up to n bytes at off, retrying short reads and EINTR; *got is what was read (short
// only at end of file).
Status PreadAll(int fd, void* buf, size_t n, off_t off, size_t* got);
// Writes all n bytes at off (or at the file position when off < 0), retrying EINTR.
Status PwriteAll(int fd, const void* buf, size_t n, off_t off);
// open(2) with O_CLOEXEC; kNotFound when the path does not exist.
Status OpenFile(const std::string& path, int flags, int mode, UniqueFd* out);
// mkdir -p with mode for every directory it creates.
Status MakeDirs(const std::string& path, int mode);
// Gives free heap pages back to the system (glibc keeps them otherwise, so RSS stays at its peak).
void ReturnFreeMemory();

}  // namespace modelfs
