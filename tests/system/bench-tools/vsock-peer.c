/* SPDX-License-Identifier: GPL-3.0-or-later */
/* vsock-peer: the host end of roombench's vsock figures (bench-only). Listens on the Unix
 * socket where anchor-vmm's hybrid vsock sends guest connections to host port P
 * (`<uds>_<P>`), and serves connections one after the other: a 16-byte command
 * "S <mib>" (the room sends: read it all, answer the 8-byte count) or "R <mib>" (send
 * that many MiB to the room, then close).
 * usage: vsock-peer SOCKET_PATH */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static int read_full(int fd, void *p, size_t len) {
  size_t have = 0;
  while (have < len) {
    ssize_t n = read(fd, (char *)p + have, len - have);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return -1;
    have += (size_t)n;
  }
  return 0;
}

static int write_full(int fd, const void *p, size_t len) {
  while (len) {
    ssize_t n = write(fd, p, len);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return -1;
    p = (const char *)p + n;
    len -= (size_t)n;
  }
  return 0;
}

int main(int argc, char **argv) {
  if (argc != 2) { fprintf(stderr, "usage: vsock-peer SOCKET_PATH\n"); return 2; }
  int l = socket(AF_UNIX, SOCK_STREAM, 0);
  struct sockaddr_un a = { .sun_family = AF_UNIX };
  if (strlen(argv[1]) >= sizeof a.sun_path) return 2;
  strcpy(a.sun_path, argv[1]);
  unlink(argv[1]);
  if (l < 0 || bind(l, (struct sockaddr *)&a, sizeof a) != 0 || listen(l, 4) != 0) {
    perror("vsock-peer: listen");
    return 1;
  }
  static char buf[64 * 1024];
  memset(buf, 0xa5, sizeof buf);
  for (;;) {
    int c = accept(l, NULL, NULL);
    if (c < 0) { if (errno == EINTR) continue; perror("vsock-peer: accept"); return 1; }
    char cmd[17] = {0};
    if (read_full(c, cmd, 16) == 0) {
      long mib = atol(cmd + 2);
      if (cmd[0] == 'S') {
        uint64_t total = 0, want = (uint64_t)mib << 20;
        while (total < want) {
          ssize_t n = read(c, buf, sizeof buf);
          if (n < 0 && errno == EINTR) continue;
          if (n <= 0) break;
          total += (uint64_t)n;
        }
        write_full(c, &total, sizeof total);
      } else if (cmd[0] == 'R') {
        for (long i = 0; i < mib * 16; i++)
          if (write_full(c, buf, sizeof buf) != 0) break;
      }
    }
    close(c);
  }
}
