// Clang's thread-safety annotations (-Wthread-safety): a member GUARDED_BY(mu_) may only be
// touched with mu_ held, a function REQUIRES(mu_) is called with it held. The CI's clang build
// checks them; GCC ignores them.
#pragma once

#if defined(__clang__)
#define MODELFS_TSA(x) __attribute__((x))
#else
#define MODELFS_TSA(x)
#endif

#define CAPABILITY(x) MODELFS_TSA(capability(x))
#define SCOPED_CAPABILITY MODELFS_TSA(scoped_lockable)
#define GUARDED_BY(x) MODELFS_TSA(guarded_by(x))
#define PT_GUARDED_BY(x) MODELFS_TSA(pt_guarded_by(x))
#define ACQUIRED_BEFORE(...) MODELFS_TSA(acquired_before(__VA_ARGS__))
#define ACQUIRED_AFTER(...) MODELFS_TSA(acquired_after(__VA_ARGS__))
#define REQUIRES(...) MODELFS_TSA(requires_capability(__VA_ARGS__))
#define REQUIRES_SHARED(...) MODELFS_TSA(requires_shared_capability(__VA_ARGS__))
#define ACQUIRE(...) MODELFS_TSA(acquire_capability(__VA_ARGS__))
#define ACQUIRE_SHARED(...) MODELFS_TSA(acquire_shared_capability(__VA_ARGS__))
#define RELEASE(...) MODELFS_TSA(release_capability(__VA_ARGS__))
#define RELEASE_SHARED(...) MODELFS_TSA(release_shared_capability(__VA_ARGS__))
#define RELEASE_GENERIC(...) MODELFS_TSA(release_generic_capability(__VA_ARGS__))
#define EXCLUDES(...) MODELFS_TSA(locks_excluded(__VA_ARGS__))
#define RETURN_CAPABILITY(x) MODELFS_TSA(lock_returned(x))
#define NO_THREAD_SAFETY_ANALYSIS MODELFS_TSA(no_thread_safety_analysis)
