/*
 * The libdevmapper peer for the benchmark: workloads 1 and 2 through
 * libdevmapper's dm_task API, the library Docker's devicemapper driver used.
 * udev sync is off (no udev runs in the VM), so libdevmapper makes and
 * removes the /dev/mapper nodes itself, as the library does. Compiled by
 * bench/run.mjs against Debian's libdevmapper-dev.
 *
 *   libdm-reference thin POOL N   create_thin, create + load + resume, remove, delete
 *   libdm-reference snap POOL N   origin active: suspend + create_snap + resume, activate, deactivate, delete
 *
 * Prints the mean microseconds per cycle.
 */
#include <libdevmapper.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void die(const char *what) {
  fprintf(stderr, "libdm-reference: %s failed\n", what);
  exit(1);
}

static void run(int type, const char *name, const char *table_type, const char *params, const char *message) {
  struct dm_task *t = dm_task_create(type);
  if (!t || !dm_task_set_name(t, name)) die("dm_task_create");
  if (table_type && !dm_task_add_target(t, 0, 2048, table_type, params)) die("dm_task_add_target");
  if (message && (!dm_task_set_sector(t, 0) || !dm_task_set_message(t, message))) die("dm_task_set_message");
  if (!dm_task_run(t)) die(message ? message : name);
  dm_task_destroy(t);
  dm_task_update_nodes(); /* make or remove /dev/mapper/NAME now, as dmsetup does before it exits */
}

/* dmsetup create NAME --table: create with the table, which resumes it. */
static void activate(const char *pool, const char *name, int id) {
  char params[256];
  snprintf(params, sizeof params, "/dev/mapper/%s %d", pool, id);
  run(DM_DEVICE_CREATE, name, "thin", params, NULL);
}

static double now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

int main(int argc, char **argv) {
  if (argc != 4 || (strcmp(argv[1], "thin") && strcmp(argv[1], "snap"))) {
    fprintf(stderr, "usage: libdm-reference thin|snap POOL N\n");
    return 2;
  }
  dm_udev_set_sync_support(0);
  const char *pool = argv[2];
  int n = atoi(argv[3]), snap = strcmp(argv[1], "snap") == 0;
  char text[64], name[128];
  if (snap) {
    run(DM_DEVICE_TARGET_MSG, pool, NULL, NULL, "create_thin 900002");
    activate(pool, "libdm-origin", 900002);
  }
  double start = now_us();
  for (int i = 0; i < n; i++) {
    snprintf(name, sizeof name, "libdm-%d", i);
    if (snap) {
      run(DM_DEVICE_SUSPEND, "libdm-origin", NULL, NULL, NULL);
      snprintf(text, sizeof text, "create_snap %d 900002", i);
      run(DM_DEVICE_TARGET_MSG, pool, NULL, NULL, text);
      run(DM_DEVICE_RESUME, "libdm-origin", NULL, NULL, NULL);
    } else {
      snprintf(text, sizeof text, "create_thin %d", i);
      run(DM_DEVICE_TARGET_MSG, pool, NULL, NULL, text);
    }
    activate(pool, name, i);
    run(DM_DEVICE_REMOVE, name, NULL, NULL, NULL);
    snprintf(text, sizeof text, "delete %d", i);
    run(DM_DEVICE_TARGET_MSG, pool, NULL, NULL, text);
  }
  double us = (now_us() - start) / n;
  if (snap) {
    run(DM_DEVICE_REMOVE, "libdm-origin", NULL, NULL, NULL);
    run(DM_DEVICE_TARGET_MSG, pool, NULL, NULL, "delete 900002");
  }
  printf("%.1f\n", us);
  return 0;
}
