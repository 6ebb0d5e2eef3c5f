/* SPDX-License-Identifier: GPL-3.0-or-later */
/* bench-run (bench-only; tests/system/bench-nested.sh): exec CMD (a VMM) with its stdout
 * (the room's serial console) on a pipe, copy the bytes to LOG, and stamp CLOCK_MONOTONIC
 * at exec, at the first byte, at the end of MARKER, at the VMM's exit and once every
 * process it started is gone (bench-run is a child subreaper and reaps them all: the whole
 * cycle, teardown helpers included).
 *
 * usage: bench-run TIMEOUT_S MARKER LOG ERR [-i TRIGGER INPUT] -- CMD [ARGS...]
 *   -i TRIGGER INPUT  once TRIGGER appears in the output, write the file INPUT to the VMM's
 *                     stdin (the room's console: commands for its shell); otherwise the
 *                     VMM's stdin is /dev/null.
 * When the marker appears, and whenever a line `roombench: mark NAME` appears, the VMM's KVM
 * statistics are sampled (the marker as NAME "boot")
 * and reported as `NAME.STAT=VALUE` for the stats in STATS below, summed over the vcpus:
 * the per-vcpu statistics fds the VMM holds (anchor-vmm --exit-stats opens them at
 * setup) are borrowed with pidfd_getfd and read. (KVM refuses vcpu ioctls from another
 * process, so a VMM that holds no stats fd reports nothing.)
 * prints: first_ms=F marker_ms=M exit_ms=E gone_ms=G status=S timeout=0|1 [NAME.STAT=V...]
 * (ms since exec; -1 = never). */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_pidfd_getfd
#define SYS_pidfd_getfd 438
#endif

static const char *STATS[] = {"exits", "mmio_exits", "io_exits", "halt_exits", "irq_injections"};
#define NSTATS (sizeof STATS / sizeof STATS[0])

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* Adds the values of STATS in the KVM stats fd `sfd` to `sum`. */
static void add_stats(int sfd, uint64_t *sum) {
  uint32_t h[6];
  if (pread(sfd, h, sizeof h, 0) != sizeof h) return;
  uint32_t name_size = h[1], ndesc = h[2], desc_off = h[4], data_off = h[5];
  if (name_size > 256 || ndesc > 4096) return;
  size_t stride = 16 + name_size;
  char *d = malloc(stride * ndesc);
  if (!d || pread(sfd, d, stride * ndesc, desc_off) != (ssize_t)(stride * ndesc)) { free(d); return; }
  for (uint32_t i = 0; i < ndesc; i++) {
    char *e = d + i * stride;
    uint32_t off;
    memcpy(&off, e + 8, 4);
    for (size_t s = 0; s < NSTATS; s++) {
      if (strncmp(e + 16, STATS[s], name_size) == 0) {
        uint64_t v;
        if (pread(sfd, &v, 8, (off_t)data_off + off) == 8) sum[s] += v;
      }
    }
  }
  free(d);
}

/* Sums STATS over every vcpu statistics fd of process `pid`; returns how many it read. */
static int sample(pid_t pid, uint64_t *sum) {
  int found = 0;
  memset(sum, 0, NSTATS * sizeof *sum);
  int pfd = (int)syscall(SYS_pidfd_open, pid, 0);
  if (pfd < 0) return 0;
  char dir[64];
  snprintf(dir, sizeof dir, "/proc/%d/fd", (int)pid);
  DIR *dp = opendir(dir);
  if (!dp) { close(pfd); return 0; }
  struct dirent *de;
  while ((de = readdir(dp))) {
    char path[320], target[128];
    snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
    ssize_t n = readlink(path, target, sizeof target - 1);
    if (n <= 0) continue;
    target[n] = 0;
    if (strncmp(target, "anon_inode:kvm-vcpu-stats", 25) != 0) continue;
    int fd = (int)syscall(SYS_pidfd_getfd, pfd, atoi(de->d_name), 0);
    if (fd < 0) continue;
    add_stats(fd, sum);
    close(fd);
    found++;
  }
  closedir(dp);
  close(pfd);
  return found;
}

#define MAXMARKS 16
static char mark_name[MAXMARKS][48];
static uint64_t mark_val[MAXMARKS][NSTATS];
static int mark_found[MAXMARKS];
static int nmarks;

int main(int argc, char **argv) {
  int a = 5;
  const char *trigger = NULL, *input = NULL;
  if (argc > a + 2 && strcmp(argv[a], "-i") == 0) {
    trigger = argv[a + 1];
    input = argv[a + 2];
    a += 3;
  }
  if (argc < a + 2 || strcmp(argv[a], "--") != 0) {
    fprintf(stderr, "usage: bench-run TIMEOUT_S MARKER LOG ERR [-i TRIGGER INPUT] -- CMD [ARGS...]\n");
    return 2;
  }
  double timeout = atof(argv[1]);
  const char *marker = argv[2];
  size_t mlen = strlen(marker), tlen = trigger ? strlen(trigger) : 0;
  if (mlen == 0 || mlen > 256 || tlen > 256) { fprintf(stderr, "bench-run: bad marker\n"); return 2; }
  int log = open(argv[3], O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  int err = open(argv[4], O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  int null = open("/dev/null", O_RDONLY | O_CLOEXEC);
  int p[2], in[2] = {-1, -1};
  if (log < 0 || err < 0 || null < 0 || pipe2(p, O_CLOEXEC) != 0) { perror("bench-run"); return 3; }
  if (trigger && pipe2(in, O_CLOEXEC) != 0) { perror("bench-run"); return 3; }
  if (prctl(PR_SET_CHILD_SUBREAPER, 1) != 0) { perror("bench-run: subreaper"); return 3; }
  double t0 = now();
  pid_t pid = fork();
  if (pid < 0) { perror("bench-run: fork"); return 3; }
  if (pid == 0) {
    dup2(trigger ? in[0] : null, 0); dup2(p[1], 1); dup2(err, 2);
    execvp(argv[a + 1], argv + a + 1);
    perror("bench-run: exec");
    _exit(127);
  }
  close(p[1]);
  if (trigger) close(in[0]);
  char buf[4096], win[512 + sizeof buf], line[256];
  size_t wl = 0, ll = 0;
  double t_first = -1, t_marker = -1;
  int timed_out = 0, fed = !trigger;
  struct pollfd pfd = { .fd = p[0], .events = POLLIN };
  for (;;) {
    double left = t0 + timeout - now();
    if (left <= 0) { timed_out = 1; kill(pid, SIGKILL); break; }
    int r = poll(&pfd, 1, (int)(left * 1000) + 1);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) { perror("bench-run: poll"); kill(pid, SIGKILL); break; }
    if (r == 0) continue;
    ssize_t n = read(p[0], buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    double t = now();
    if (t_first < 0) t_first = t;
    if (write(log, buf, (size_t)n) < 0) { /* the log is informative only */ }
    /* Marker and trigger search over a sliding window. */
    memcpy(win + wl, buf, (size_t)n);
    wl += (size_t)n;
    if (t_marker < 0 && memmem(win, wl, marker, mlen)) {
      t_marker = t;
      /* The exit counters at the marker: what booting to it cost (mark "boot"). */
      if (nmarks < MAXMARKS) {
        snprintf(mark_name[nmarks], sizeof mark_name[0], "boot");
        mark_found[nmarks] = sample(pid, mark_val[nmarks]);
        nmarks++;
      }
    }
    if (!fed && memmem(win, wl, trigger, tlen)) {
      int f = open(input, O_RDONLY | O_CLOEXEC);
      ssize_t k;
      char ib[4096];
      while (f >= 0 && (k = read(f, ib, sizeof ib)) > 0)
        if (write(in[1], ib, (size_t)k) < 0) break;
      if (f >= 0) close(f);
      fed = 1;
    }
    size_t keep = 512 < wl ? 512 : wl;
    memmove(win, win + wl - keep, keep);
    wl = keep;
    /* Lines, for the stats marks. */
    for (ssize_t i = 0; i < n; i++) {
      char c = buf[i];
      if (c == '\n' || c == '\r' || ll == sizeof line - 1) {
        line[ll] = 0;
        const char *m = strstr(line, "roombench: mark ");
        if (m && nmarks < MAXMARKS) {
          snprintf(mark_name[nmarks], sizeof mark_name[0], "%s", m + 16);
          mark_found[nmarks] = sample(pid, mark_val[nmarks]);
          nmarks++;
        }
        ll = 0;
      } else {
        line[ll++] = c;
      }
    }
  }
  if (trigger) close(in[1]);
  int st = 0;
  while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {}
  double t_exit = now();
  /* Everything the VMM started is ours to reap now (subreaper). */
  while (wait(NULL) > 0 || errno == EINTR) {}
  double t_gone = now();
  int status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
#define MS(t) ((t) < 0 ? -1.0 : ((t) - t0) * 1000.0)
  printf("first_ms=%.1f marker_ms=%.1f exit_ms=%.1f gone_ms=%.1f status=%d timeout=%d",
         MS(t_first), MS(t_marker), MS(t_exit), MS(t_gone), status, timed_out);
  for (int i = 0; i < nmarks; i++)
    for (size_t s = 0; mark_found[i] && s < NSTATS; s++)
      printf(" %s.%s=%llu", mark_name[i], STATS[s], (unsigned long long)mark_val[i][s]);
  printf("\n");
  return 0;
}
