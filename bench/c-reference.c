/*
 * The physical limit for the benchmark: the same kernel calls the library
 * makes, from C, with no library in between. Compiled by bench/run.mjs.
 *
 *   c-reference thin   POOL N      create_thin + create + mknod + load + resume, then remove + unlink + delete
 *   c-reference snap   POOL N      origin active: suspend + create_snap + resume, activate, deactivate, delete
 *   c-reference loop   FILE N      GET_FREE + LOOP_CONFIGURE, then LOOP_CLR_FD
 *   c-reference reopen FILE N      the same with the library's descriptors: the device is
 *                                  closed after LOOP_CONFIGURE and opened again (read-only)
 *                                  for LOOP_CLR_FD, as two separate calls do
 *   c-reference info   N_DEV N     what loop.info() does: open + LOOP_GET_STATUS64 + close
 *                                  of /dev/loopN_DEV, and its five sysfs attributes
 *   c-reference version N          DM_VERSION on the control fd (the cheapest ioctl)
 *
 * Prints the mean microseconds per cycle.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/dm-ioctl.h>
#include <linux/loop.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

#define BUF 16384
static char buf[BUF] __attribute__((aligned(8)));
static int control;

static void die(const char *what) {
  fprintf(stderr, "c-reference: %s: %s\n", what, strerror(errno));
  exit(1);
}

static struct dm_ioctl *header(const char *name, uint32_t flags) {
  memset(buf, 0, BUF);
  struct dm_ioctl *io = (struct dm_ioctl *)buf;
  io->version[0] = DM_VERSION_MAJOR;
  io->data_size = BUF;
  io->data_start = sizeof(struct dm_ioctl);
  io->flags = flags;
  if (name) strncpy(io->name, name, sizeof io->name - 1);
  return io;
}

static void message(const char *pool, const char *text) {
  struct dm_ioctl *io = header(pool, 0);
  struct dm_target_msg *m = (struct dm_target_msg *)(buf + io->data_start);
  m->sector = 0;
  strcpy(m->message, text);
  if (ioctl(control, DM_TARGET_MSG, buf) < 0) die(text);
}

static dev_t create(const char *name) {
  struct dm_ioctl *io = header(name, 0);
  if (ioctl(control, DM_DEV_CREATE, io) < 0) die("DM_DEV_CREATE");
  return (dev_t)io->dev;
}

static void load(const char *name, uint64_t sectors, const char *type, const char *params) {
  struct dm_ioctl *io = header(name, 0);
  struct dm_target_spec *t = (struct dm_target_spec *)(buf + io->data_start);
  io->target_count = 1;
  t->sector_start = 0;
  t->length = sectors;
  strcpy(t->target_type, type);
  strcpy((char *)(t + 1), params);
  t->next = (sizeof *t + strlen(params) + 1 + 7) & ~7u;
  if (ioctl(control, DM_TABLE_LOAD, io) < 0) die("DM_TABLE_LOAD");
}

static void suspend(const char *name, int on) {
  if (ioctl(control, DM_DEV_SUSPEND, header(name, on ? DM_SUSPEND_FLAG : 0)) < 0) die("DM_DEV_SUSPEND");
}

static void removedev(const char *name) {
  if (ioctl(control, DM_DEV_REMOVE, header(name, 0)) < 0) die("DM_DEV_REMOVE");
}

/* What the library does without udev: make and remove /dev/mapper/NAME. */
static void activate(const char *pool, const char *name, int id) {
  char params[256], node[256];
  dev_t dev = create(name);
  snprintf(node, sizeof node, "/dev/mapper/%s", name);
  if (mknod(node, S_IFBLK | 0660, dev) < 0 && errno != EEXIST) die("mknod");
  snprintf(params, sizeof params, "/dev/mapper/%s %d", pool, id);
  load(name, 2048, "thin", params);
  suspend(name, 0);
}

static void deactivate(const char *name) {
  char node[256];
  removedev(name);
  snprintf(node, sizeof node, "/dev/mapper/%s", name);
  unlink(node);
}

static double now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

/* A small file's contents, read as Node's readFileSync reads it (open, read, close). */
static void slurp(const char *path) {
  char text[4096];
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) die(path);
  if (read(fd, text, sizeof text) < 0) die(path);
  close(fd);
}

int main(int argc, char **argv) {
  if (argc == 3 && strcmp(argv[1], "version") == 0) {
    int n = atoi(argv[2]);
    control = open("/dev/mapper/control", O_RDWR | O_CLOEXEC);
    if (control < 0) die("open /dev/mapper/control");
    double start = now_us();
    for (int i = 0; i < n; i++)
      if (ioctl(control, DM_VERSION, header(NULL, 0)) < 0) die("DM_VERSION");
    printf("%.1f\n", (now_us() - start) / n);
    return 0;
  }
  if (argc != 4) {
    fprintf(stderr, "usage: c-reference thin|snap POOL N | loop|reopen FILE N | info LOOP_NUMBER N | version N\n");
    return 2;
  }
  int n = atoi(argv[3]);
  char text[64], name[128];
  double start = now_us();
  if (strcmp(argv[1], "info") == 0) {
    static const char *attrs[] = {"dev", "loop/backing_file", "queue/logical_block_size", "size", "loop/dio"};
    char path[128];
    snprintf(name, sizeof name, "/dev/loop%s", argv[2]);
    for (int i = 0; i < n; i++) {
      int dev = open(name, O_RDONLY | O_CLOEXEC);
      struct loop_info64 li;
      if (dev < 0 || ioctl(dev, LOOP_GET_STATUS64, &li) < 0) die("LOOP_GET_STATUS64");
      close(dev);
      for (int a = 0; a < 5; a++) {
        snprintf(path, sizeof path, "/sys/block/loop%s/%s", argv[2], attrs[a]);
        slurp(path);
      }
    }
  } else if (strcmp(argv[1], "loop") == 0 || strcmp(argv[1], "reopen") == 0) {
    int reopen = strcmp(argv[1], "reopen") == 0;
    int ctl = open("/dev/loop-control", O_RDWR | O_CLOEXEC);
    if (ctl < 0) die("open /dev/loop-control");
    for (int i = 0; i < n; i++) {
      int file = open(argv[2], O_RDWR | O_CLOEXEC);
      int nr = ioctl(ctl, LOOP_CTL_GET_FREE);
      if (file < 0 || nr < 0) die("LOOP_CTL_GET_FREE");
      char path[64];
      snprintf(path, sizeof path, "/dev/loop%d", nr);
      int dev = open(path, O_RDWR | O_CLOEXEC);
      if (dev < 0) die(path);
      struct loop_config cfg;
      memset(&cfg, 0, sizeof cfg);
      cfg.fd = (uint32_t)file;
      if (ioctl(dev, LOOP_CONFIGURE, &cfg) < 0) {
        /* Another process took this free device first: ask for another, as util-linux and the library do. */
        if (errno != EBUSY) die("LOOP_CONFIGURE");
        close(dev);
        close(file);
        i--;
        continue;
      }
      close(file);
      if (reopen) {
        close(dev);
        dev = open(path, O_RDONLY | O_CLOEXEC);
        if (dev < 0) die(path);
      }
      if (ioctl(dev, LOOP_CLR_FD, 0) < 0) die("LOOP_CLR_FD");
      close(dev);
    }
  } else {
    control = open("/dev/mapper/control", O_RDWR | O_CLOEXEC);
    if (control < 0) die("open /dev/mapper/control");
    const char *pool = argv[2];
    int snap = strcmp(argv[1], "snap") == 0;
    if (snap) {
      message(pool, "create_thin 900000");
      activate(pool, "cref-origin", 900000);
      start = now_us();
    }
    for (int i = 0; i < n; i++) {
      snprintf(name, sizeof name, "cref-%d", i);
      if (snap) {
        suspend("cref-origin", 1);
        snprintf(text, sizeof text, "create_snap %d 900000", i);
        message(pool, text);
        suspend("cref-origin", 0);
      } else {
        snprintf(text, sizeof text, "create_thin %d", i);
        message(pool, text);
      }
      activate(pool, name, i);
      deactivate(name);
      snprintf(text, sizeof text, "delete %d", i);
      message(pool, text);
    }
    double elapsed = now_us() - start;
    if (snap) {
      deactivate("cref-origin");
      message(pool, "delete 900000");
    }
    printf("%.1f\n", elapsed / n);
    return 0;
  }
  printf("%.1f\n", (now_us() - start) / n);
  return 0;
}
