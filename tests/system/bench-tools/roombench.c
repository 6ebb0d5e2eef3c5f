/* SPDX-License-Identifier: GPL-3.0-or-later */
/* roombench: I/O figures measured inside a room (bench-only; tests/system/bench-nested.sh).
 * Static, no dependencies. Clock: CLOCK_MONOTONIC of the room.
 *   roombench seq DEV MIB        sequential O_DIRECT reads, 1 MiB each, from DEV
 *   roombench rand DEV SECONDS   4 KiB O_DIRECT reads at random 4 KiB offsets, queue depth 1
 *   roombench vsock-send PORT MIB  connect to the host (CID 2) on PORT, send MIB MiB,
 *                                  read the peer's 8-byte count back
 *   roombench vsock-recv PORT MIB  connect, ask the host for MIB MiB, read them
 *   roombench loop MIB           AF_UNIX socketpair between two processes in the room,
 *                                  MIB MiB through it (the in-room loopback ceiling)
 *   roombench tcp-get IPV4 MIB   HTTP GET /bytes/N from anchor-outside (TCP 80) through the
 *                                  room's network: MiB/s from connect to the last byte
 *   roombench tcp-connect IPV4 COUNT  COUNT times: connect to anchor-outside's echo port
 *                                  (TCP 7), one byte there and back, close: latencies
 * Each prints one line `roombench: NAME key=value...`; around each transfer it prints
 * `roombench: mark NAME-start` / `roombench: mark NAME-end` (the host samples the VMM's
 * KVM exit counters there). Exit status 0, or 1 with a message. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <linux/vm_sockets.h>
#include <arpa/inet.h>
#include <netinet/in.h>

#define MIB (1024 * 1024)

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void die(const char *what) {
  fprintf(stderr, "roombench: %s: %s\n", what, strerror(errno));
  exit(1);
}

static void mark(const char *name) {
  /* One write per line; give the host time to sample before the transfer starts. The
   * pause spins on the clock instead of sleeping: in a room nested under TCG a sleeping
   * vcpu's LAPIC timer may fire very late (the room's timers only run when some other
   * interrupt wakes it), while the clock itself (kvm-clock) is right. */
  char line[96];
  int n = snprintf(line, sizeof line, "roombench: mark %s\n", name);
  if (write(1, line, (size_t)n) < 0) die("write");
  double until = now() + 0.1;
  while (now() < until) {}
}

static void *buffer(size_t len) {
  void *p = NULL;
  if (posix_memalign(&p, 4096, len) != 0) die("posix_memalign");
  memset(p, 0x5a, len);
  return p;
}

static int seq(const char *dev, long mib) {
  int fd = open(dev, O_RDONLY | O_DIRECT);
  if (fd < 0) die(dev);
  char *buf = buffer(MIB);
  mark("seq-start");
  double t0 = now();
  long done = 0;
  for (; done < mib; done++) {
    ssize_t n = pread(fd, buf, MIB, (off_t)done * MIB);
    if (n != MIB) { if (n < 0) die("pread"); break; }
  }
  double s = now() - t0;
  mark("seq-end");
  printf("roombench: seq_read mib=%ld seconds=%.3f mib_per_s=%.1f\n", done, s, (double)done / s);
  return 0;
}

static int rnd(const char *dev, double seconds) {
  int fd = open(dev, O_RDONLY | O_DIRECT);
  if (fd < 0) die(dev);
  off_t size = lseek(fd, 0, SEEK_END);
  if (size < 4096) die("device too small");
  uint64_t blocks = (uint64_t)size / 4096, x = 88172645463325252ull;
  char *buf = buffer(4096);
  mark("rand-start");
  double t0 = now(), t;
  long ios = 0;
  do {
    for (int i = 0; i < 64; i++) {
      x ^= x << 13; x ^= x >> 7; x ^= x << 17;
      if (pread(fd, buf, 4096, (off_t)((x % blocks) * 4096)) != 4096) die("pread");
      ios++;
    }
    t = now() - t0;
  } while (t < seconds);
  mark("rand-end");
  printf("roombench: rand_read_4k ios=%ld seconds=%.3f iops=%.0f\n", ios, t, (double)ios / t);
  return 0;
}

static int vsock_connect(int port) {
  int s = socket(AF_VSOCK, SOCK_STREAM, 0);
  if (s < 0) die("socket(AF_VSOCK)");
  struct sockaddr_vm a = { .svm_family = AF_VSOCK, .svm_cid = 2, .svm_port = (unsigned)port };
  if (connect(s, (struct sockaddr *)&a, sizeof a) != 0) die("vsock connect");
  return s;
}

static void write_all(int fd, const char *p, size_t len) {
  while (len) {
    ssize_t n = write(fd, p, len);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) die("write");
    p += n; len -= (size_t)n;
  }
}

static int vsock_send(int port, long mib) {
  int s = vsock_connect(port);
  char cmd[16] = {0};
  snprintf(cmd, sizeof cmd, "S %ld", mib);
  write_all(s, cmd, sizeof cmd);
  char *buf = buffer(64 * 1024);
  mark("vsend-start");
  double t0 = now();
  for (long i = 0; i < mib * 16; i++) write_all(s, buf, 64 * 1024);
  uint64_t got = 0;
  size_t have = 0;
  while (have < sizeof got) {
    ssize_t n = read(s, (char *)&got + have, sizeof got - have);
    if (n <= 0) die("read ack");
    have += (size_t)n;
  }
  double t = now() - t0;
  mark("vsend-end");
  printf("roombench: vsock_room_to_host mib=%ld host_got=%llu seconds=%.3f mib_per_s=%.1f\n",
         mib, (unsigned long long)got, t, (double)mib / t);
  return got == (uint64_t)mib * MIB ? 0 : 1;
}

static int vsock_recv(int port, long mib) {
  int s = vsock_connect(port);
  char cmd[16] = {0};
  snprintf(cmd, sizeof cmd, "R %ld", mib);
  write_all(s, cmd, sizeof cmd);
  char *buf = buffer(64 * 1024);
  mark("vrecv-start");
  double t0 = now();
  long long total = 0;
  for (;;) {
    ssize_t n = read(s, buf, 64 * 1024);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) die("read");
    if (n == 0) break;
    total += n;
  }
  double t = now() - t0;
  mark("vrecv-end");
  printf("roombench: vsock_host_to_room mib=%ld got=%lld seconds=%.3f mib_per_s=%.1f\n",
         mib, total, t, (double)total / MIB / t);
  return total == (long long)mib * MIB ? 0 : 1;
}

static int loop(long mib) {
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0) die("socketpair");
  char *buf = buffer(64 * 1024);
  double t0 = now();
  pid_t pid = fork();
  if (pid < 0) die("fork");
  if (pid == 0) {
    close(sv[0]);
    for (long i = 0; i < mib * 16; i++) write_all(sv[1], buf, 64 * 1024);
    _exit(0);
  }
  close(sv[1]);
  long long total = 0;
  for (;;) {
    ssize_t n = read(sv[0], buf, 64 * 1024);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    total += n;
  }
  double t = now() - t0;
  waitpid(pid, NULL, 0);
  printf("roombench: loopback mib=%ld got=%lld seconds=%.3f mib_per_s=%.1f\n",
         mib, total, t, (double)total / MIB / t);
  return 0;
}

static int tcp_to(const char *ip, int port) {
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  if (inet_pton(AF_INET, ip, &a.sin_addr) != 1) { errno = EINVAL; die("address"); }
  int s = socket(AF_INET, SOCK_STREAM, 0);
  if (s < 0) die("socket");
  if (connect(s, (struct sockaddr *)&a, sizeof a) != 0) die("connect");
  return s;
}

static int tcp_get(const char *ip, long mib) {
  char req[96];
  char *buf = buffer(64 * 1024);
  mark("tcp-start");
  double t0 = now();
  int s = tcp_to(ip, 80);
  int n = snprintf(req, sizeof req, "GET /bytes/%ld HTTP/1.0\r\n\r\n", mib * MIB);
  write_all(s, req, (size_t)n);
  long long total = 0;
  for (;;) {
    ssize_t r = read(s, buf, 64 * 1024);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) die("read");
    if (r == 0) break;
    total += r;
  }
  double t = now() - t0;
  close(s);
  mark("tcp-end");
  /* The body is what was asked for; the rest is the response head. */
  printf("roombench: tcp_get mib=%ld got=%lld seconds=%.3f mib_per_s=%.1f\n", mib, total, t,
         (double)(mib * MIB) / MIB / t);
  return total >= mib * MIB ? 0 : 1;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static int tcp_connect(const char *ip, int count) {
  if (count < 1 || count > 10000) { errno = EINVAL; die("count"); }
  double *ms = calloc((size_t)count, sizeof *ms);
  if (!ms) die("calloc");
  for (int i = 0; i < count; i++) {
    char c = 'x';
    double t0 = now();
    int s = tcp_to(ip, 7);
    write_all(s, &c, 1);
    if (read(s, &c, 1) != 1) die("echo");
    close(s);
    ms[i] = (now() - t0) * 1000.0;
  }
  qsort(ms, (size_t)count, sizeof *ms, cmp_double);
  printf("roombench: tcp_connect count=%d median_ms=%.3f min_ms=%.3f max_ms=%.3f\n", count,
         ms[count / 2], ms[0], ms[count - 1]);
  return 0;
}

int main(int argc, char **argv) {
  setvbuf(stdout, NULL, _IOLBF, 0);
  if (argc == 4 && !strcmp(argv[1], "seq")) return seq(argv[2], atol(argv[3]));
  if (argc == 4 && !strcmp(argv[1], "rand")) return rnd(argv[2], atof(argv[3]));
  if (argc == 4 && !strcmp(argv[1], "vsock-send")) return vsock_send(atoi(argv[2]), atol(argv[3]));
  if (argc == 4 && !strcmp(argv[1], "vsock-recv")) return vsock_recv(atoi(argv[2]), atol(argv[3]));
  if (argc == 3 && !strcmp(argv[1], "loop")) return loop(atol(argv[2]));
  if (argc == 4 && !strcmp(argv[1], "tcp-get")) return tcp_get(argv[2], atol(argv[3]));
  if (argc == 4 && !strcmp(argv[1], "tcp-connect")) return tcp_connect(argv[2], atoi(argv[3]));
  fprintf(stderr, "usage: roombench seq DEV MIB | rand DEV SECONDS | vsock-send PORT MIB | "
                  "vsock-recv PORT MIB | loop MIB | tcp-get IPV4 MIB | tcp-connect IPV4 COUNT\n");
  return 2;
}
