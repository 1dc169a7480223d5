// Keeps the prebuilds loadable on glibc 2.28 when built against a newer one.
// Three symbols of the build machine's glibc are newer than 2.28: mknod and
// fstat64 (2.33: before, they were inline wrappers around __xmknod/__fxstat64)
// and __libc_single_threaded (2.32, read by libstdc++'s inline reference
// counting). binding.gyp routes calls to mknod and fstat here (ld --wrap);
// on glibc they make the raw syscalls glibc itself makes, so nothing binds
// to the new versions, and __libc_single_threaded is defined here, hidden.
// Other libcs (musl) build from source against their own: plain calls.
// One libstdc++ symbol is newer than GCC 8's (GLIBCXX_3.4.25, glibc 2.28
// systems' libstdc++): std::__throw_bad_array_new_length (GCC 11), called by
// the inline std::allocator when a vector or deque would pass max_size; it
// is defined here, hidden, throwing what libstdc++'s own does.
// test/host/package.test.ts reads the prebuilds' symbol versions.
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <new>

#define LOCAL __attribute__((visibility("hidden")))

extern "C" {

#ifdef __GLIBC__
// mknodat: arm64 has no mknod syscall.
LOCAL int __wrap_mknod(const char* path, mode_t mode, dev_t dev) {
  return static_cast<int>(syscall(SYS_mknodat, AT_FDCWD, path, mode, dev));
}
// On x86-64 and arm64 the kernel's struct stat is glibc's struct stat64.
LOCAL int __wrap_fstat64(int fd, struct stat64* st) { return static_cast<int>(syscall(SYS_newfstatat, fd, "", st, AT_EMPTY_PATH)); }
LOCAL int __wrap_fstat(int fd, struct stat* st) { return static_cast<int>(syscall(SYS_newfstatat, fd, "", st, AT_EMPTY_PATH)); }

// Never "single-threaded": libstdc++ then always uses atomic reference
// counts, as glibc's own value would say in Node, whose threads start
// before any addon loads.
LOCAL char __libc_single_threaded = 0;
#else
int __real_mknod(const char* path, mode_t mode, dev_t dev);
int __real_fstat(int fd, struct stat* st);
LOCAL int __wrap_mknod(const char* path, mode_t mode, dev_t dev) { return __real_mknod(path, mode, dev); }
LOCAL int __wrap_fstat(int fd, struct stat* st) { return __real_fstat(fd, st); }
#endif
}

#ifdef __GLIBCXX__
namespace std {
LOCAL void __throw_bad_array_new_length() { throw std::bad_array_new_length(); }
}  // namespace std
#endif
