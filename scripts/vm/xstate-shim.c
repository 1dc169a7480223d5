/*
 * LD_PRELOAD shim for Debian's user-mode-linux 6.1 on hosts whose XSAVE area
 * is larger than UML's compiled-in buffer (e.g. CPUs with AMX: 10752 bytes
 * against UML's 832).  The host kernel only accepts PTRACE_SETREGSET
 * NT_X86_XSTATE with the full host size and answers EFAULT otherwise, so UML
 * panics at the first context switch ("ptrace set fp regs failed, errno = 14").
 *
 * UML saves each guest task's FP state into a per-task buffer and restores it
 * from the same buffer.  We keep, per buffer address, the full host-size
 * state: GET fills it and hands UML the prefix it asked for; SET overlays
 * UML's (possibly edited) prefix onto it and writes the full state back.
 * Components beyond UML's prefix (AVX-512, ...) are therefore preserved
 * across preemption exactly as the host saved them.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <elf.h>
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/types.h>
#include <sys/uio.h>

#define SLOTS 8192
#define FULL_MAX (64 * 1024)

struct slot { void *key; unsigned char *full; size_t len; };

static struct slot table[SLOTS];
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static long (*real_ptrace)(int, pid_t, void *, void *);

static struct slot *lookup(void *key, int create) {
  size_t h = ((uintptr_t)key >> 4) % SLOTS;
  for (size_t i = 0; i < SLOTS; i++) {
    struct slot *s = &table[(h + i) % SLOTS];
    if (s->key == key) return s;
    if (s->key == NULL) {
      if (!create) return NULL;
      s->key = key;
      return s;
    }
  }
  return NULL; /* table full: caller falls back to a one-off buffer */
}

/* Full-size GET into buf (capacity FULL_MAX); returns the size or -1. */
static long get_full(pid_t pid, unsigned char *buf) {
  struct iovec iov = { buf, FULL_MAX };
  if (real_ptrace(PTRACE_GETREGSET, pid, (void *)(uintptr_t)NT_X86_XSTATE, &iov) < 0) return -1;
  return (long)iov.iov_len;
}

static long xstate(int req, pid_t pid, struct iovec *uiov) {
  pthread_mutex_lock(&lock);
  struct slot *s = lookup(uiov->iov_base, 1);
  unsigned char *tmp = NULL, *full;
  long rc = -1;
  if (s && !s->full) s->full = calloc(1, FULL_MAX);
  full = s ? s->full : (tmp = calloc(1, FULL_MAX));
  if (!full) { errno = ENOMEM; goto out; }
  if (req == PTRACE_GETREGSET) {
    long n = get_full(pid, full);
    if (n < 0) goto out;
    if (s) s->len = (size_t)n;
    size_t want = uiov->iov_len < (size_t)n ? uiov->iov_len : (size_t)n;
    memcpy(uiov->iov_base, full, want);
    uiov->iov_len = want;
    rc = 0;
  } else {
    size_t n = s ? s->len : 0;
    if (n == 0) { /* never saved through this buffer: start from the live state */
      long got = get_full(pid, full);
      if (got < 0) goto out;
      n = (size_t)got;
      if (s) s->len = n;
    }
    size_t take = uiov->iov_len < n ? uiov->iov_len : n;
    memcpy(full, uiov->iov_base, take);
    struct iovec iov = { full, n };
    rc = real_ptrace(PTRACE_SETREGSET, pid, (void *)(uintptr_t)NT_X86_XSTATE, &iov);
  }
out:
  free(tmp);
  pthread_mutex_unlock(&lock);
  return rc;
}

long ptrace(enum __ptrace_request req, ...) {
  va_list ap;
  va_start(ap, req);
  pid_t pid = va_arg(ap, pid_t);
  void *addr = va_arg(ap, void *);
  void *data = va_arg(ap, void *);
  va_end(ap);
  if (!real_ptrace) real_ptrace = (long (*)(int, pid_t, void *, void *))dlsym(RTLD_NEXT, "ptrace");
  if ((req == PTRACE_GETREGSET || req == PTRACE_SETREGSET) &&
      (uintptr_t)addr == NT_X86_XSTATE && data != NULL)
    return xstate(req, pid, (struct iovec *)data);
  return real_ptrace(req, pid, addr, data);
}
