// SPDX-License-Identifier: GPL-3.0-or-later
// anchor-outside: "the outside world" of the network system tests and benchmarks. It runs
// in its own network namespace of the anchor host (never the anchor host's own), and
// serves, on every address of that namespace:
//   - DNS (UDP 53): an A record ADDR for every name ending in ".anchor-test"; NXDOMAIN
//     for anything else; nothing but plain one-question queries is answered;
//   - HTTP (TCP 80): `GET /` -> a short page naming it; `GET /bytes/N` -> N bytes
//     (N <= 1 GiB), for throughput; one request per connection, then close;
//   - TCP 7 (echo): whatever arrives is sent back, for connection latency.
// usage: anchor-outside ADDR          (ADDR: the IPv4 address the DNS answers carry)
// One process; each connection is served by a forked child.
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define PAGE "anchor-outside: hello from the outside\n"
#define SUFFIX ".anchor-test"

static int listen_on(int type, int port) {
    int s = socket(AF_INET, type, 0);
    int one = 1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    if (s < 0) return -1;
    setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(s, (struct sockaddr *)&a, sizeof a) < 0) return -1;
    if (type == SOCK_STREAM && listen(s, 64) < 0) return -1;
    return s;
}

static int write_all(int fd, const char *p, size_t n) {
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

// One DNS query in q (n bytes) -> the answer in r; its length, or 0 to stay silent.
static size_t dns_answer(const unsigned char *q, size_t n, struct in_addr addr, unsigned char *r) {
    char name[256];
    size_t off = 12, len = 0;
    if (n < 17 || n > 512 || (q[2] & 0x80) || q[4] != 0 || q[5] != 1) return 0;
    while (off < n && q[off] != 0) {
        size_t l = q[off];
        if (l > 63 || off + 1 + l >= n || len + l + 1 >= sizeof name) return 0;
        if (len) name[len++] = '.';
        memcpy(name + len, q + off + 1, l);
        len += l;
        off += 1 + l;
    }
    name[len] = 0;
    if (off + 5 > n) return 0;
    size_t qend = off + 5; // the zero label, QTYPE, QCLASS
    int qtype_a = q[off + 1] == 0 && q[off + 2] == 1;
    size_t sl = strlen(SUFFIX);
    int ours = len > sl && strcmp(name + len - sl, SUFFIX) == 0;
    memcpy(r, q, qend);
    r[2] = 0x84 | (q[2] & 0x01); // response, authoritative, RD copied
    r[3] = ours ? 0x00 : 0x03;   // NXDOMAIN for names that are not ours
    r[6] = 0, r[7] = (ours && qtype_a) ? 1 : 0;
    r[8] = r[9] = r[10] = r[11] = 0;
    if (!(ours && qtype_a)) return qend;
    unsigned char rr[16] = {0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4};
    memcpy(rr + 12, &addr, 4);
    memcpy(r + qend, rr, sizeof rr);
    return qend + sizeof rr;
}

static void serve_http(int c) {
    char req[4096];
    size_t have = 0;
    while (have < sizeof req - 1) {
        ssize_t n = read(c, req + have, sizeof req - 1 - have);
        if (n <= 0) return;
        have += (size_t)n;
        req[have] = 0;
        if (strstr(req, "\r\n\r\n") || strstr(req, "\n\n")) break;
    }
    char head[256];
    unsigned long long want = 0;
    if (sscanf(req, "GET /bytes/%llu", &want) == 1 && want <= (1ULL << 30)) {
        int h = snprintf(head, sizeof head,
                         "HTTP/1.0 200 OK\r\nContent-Type: application/octet-stream\r\n"
                         "Content-Length: %llu\r\n\r\n", want);
        if (write_all(c, head, (size_t)h) < 0) return;
        static char buf[65536];
        memset(buf, 'x', sizeof buf);
        while (want > 0) {
            size_t n = want < sizeof buf ? (size_t)want : sizeof buf;
            if (write_all(c, buf, n) < 0) return;
            want -= n;
        }
    } else if (strncmp(req, "GET / ", 6) == 0) {
        int h = snprintf(head, sizeof head,
                         "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n"
                         "Content-Length: %zu\r\n\r\n", strlen(PAGE));
        if (write_all(c, head, (size_t)h) == 0) write_all(c, PAGE, strlen(PAGE));
    } else {
        const char *nf = "HTTP/1.0 404 Not Found\r\nContent-Length: 0\r\n\r\n";
        write_all(c, nf, strlen(nf));
    }
}

static void serve_echo(int c) {
    char buf[4096];
    ssize_t n;
    while ((n = read(c, buf, sizeof buf)) > 0)
        if (write_all(c, buf, (size_t)n) < 0) return;
}

int main(int argc, char **argv) {
    struct in_addr addr;
    if (argc != 2 || inet_pton(AF_INET, argv[1], &addr) != 1) {
        fprintf(stderr, "usage: anchor-outside ADDR\n");
        return 2;
    }
    signal(SIGCHLD, SIG_IGN); // children are never waited for
    signal(SIGPIPE, SIG_IGN);
    int dns = listen_on(SOCK_DGRAM, 53), http = listen_on(SOCK_STREAM, 80);
    int echo = listen_on(SOCK_STREAM, 7);
    if (dns < 0 || http < 0 || echo < 0) {
        perror("anchor-outside: bind");
        return 1;
    }
    printf("anchor-outside: serving DNS (*%s -> %s), HTTP and echo\n", SUFFIX, argv[1]);
    fflush(stdout);
    struct pollfd p[3] = {{dns, POLLIN, 0}, {http, POLLIN, 0}, {echo, POLLIN, 0}};
    for (;;) {
        if (poll(p, 3, -1) < 0) {
            if (errno == EINTR) continue;
            return 1;
        }
        if (p[0].revents & POLLIN) {
            unsigned char q[512], r[600];
            struct sockaddr_in from;
            socklen_t fl = sizeof from;
            ssize_t n = recvfrom(dns, q, sizeof q, 0, (struct sockaddr *)&from, &fl);
            size_t m = n > 0 ? dns_answer(q, (size_t)n, addr, r) : 0;
            if (m) sendto(dns, r, m, 0, (struct sockaddr *)&from, fl);
        }
        for (int i = 1; i < 3; i++) {
            if (!(p[i].revents & POLLIN)) continue;
            int c = accept(p[i].fd, NULL, NULL);
            if (c < 0) continue;
            if (fork() == 0) {
                close(dns), close(http), close(echo);
                if (i == 1) serve_http(c); else serve_echo(c);
                close(c);
                _exit(0);
            }
            close(c);
        }
    }
}
