/*
 * The bench's reference load client: one thread, level-triggered epoll,
 * non-blocking sockets, every echoed byte compared with what was sent.
 *
 *   epoll_client rr PORT CONNECTIONS SIZE SECONDS WARMUP
 *       CONNECTIONS connections to 127.0.0.1:PORT, each with one message of
 *       SIZE bytes in flight, the next sent when its whole echo is back
 *   epoll_client connect PORT CONNECTIONS SIZE SECONDS WARMUP
 *       CONNECTIONS workers, each connects, sends SIZE bytes, reads them
 *       back, closes, and starts over
 *
 * Counts only what completes in the SECONDS after the first WARMUP seconds,
 * and prints {"messages": ..., "seconds": ..., "cpu_s": ..., "errors": ...}
 * for that window (cpu_s: this process's CPU time over it).  Compiled at
 * bench time by tcplife.bench._native.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_EVENTS 512
#define VARIANTS 3

struct conn {
    int fd;
    int connecting;
    unsigned long message; /* which message is in flight */
    size_t received;
};

static int epollFd;
static struct sockaddr_in target;
static size_t size;
static char *stream; /* VARIANTS messages back to back, each a shifted pattern */
static char *buffer;
static long errors;

static double clockSeconds(clockid_t clock) {
    struct timespec now;
    clock_gettime(clock, &now);
    return (double)now.tv_sec + (double)now.tv_nsec / 1e9;
}

static const char *expected(struct conn *c) {
    return stream + (c->message % VARIANTS) * size;
}

static int sendMessage(struct conn *c) {
    c->received = 0;
    /* Small messages go out whole on loopback; a partial send is an error
       here, as the reference only needs to be fast and honest. */
    ssize_t n = send(c->fd, expected(c), size, MSG_NOSIGNAL);
    return n == (ssize_t)size ? 0 : -1;
}

static int openConnection(struct conn *c, int blocking) {
    c->fd = socket(AF_INET, SOCK_STREAM | (blocking ? 0 : SOCK_NONBLOCK), 0);
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    int done = connect(c->fd, (struct sockaddr *)&target, sizeof target);
    if (blocking)
        fcntl(c->fd, F_SETFL, O_NONBLOCK);
    struct epoll_event ev = {.data.ptr = c};
    if (done == 0) {
        c->connecting = 0;
        ev.events = EPOLLIN;
    } else if (errno == EINPROGRESS) {
        c->connecting = 1;
        ev.events = EPOLLOUT;
    } else {
        close(c->fd);
        return -1;
    }
    epoll_ctl(epollFd, EPOLL_CTL_ADD, c->fd, &ev);
    return 0;
}

/* Connected (or failed): send the message and wait for its echo. */
static int connected(struct conn *c) {
    int error = 0;
    socklen_t length = sizeof error;
    getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &error, &length);
    if (error)
        return -1;
    c->connecting = 0;
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
    epoll_ctl(epollFd, EPOLL_CTL_MOD, c->fd, &ev);
    return sendMessage(c);
}

/* Read more of the echo: 1 when a message is complete, 0 when not yet, -1
   on an error or a difference. */
static int readable(struct conn *c) {
    ssize_t n = recv(c->fd, buffer, size - c->received, 0);
    if (n <= 0)
        return (n < 0 && errno == EAGAIN) ? 0 : -1;
    if (memcmp(buffer, expected(c) + c->received, (size_t)n) != 0)
        return -1;
    c->received += (size_t)n;
    return c->received == size;
}

int main(int argc, char **argv) {
    if (argc != 7 || (strcmp(argv[1], "rr") != 0 && strcmp(argv[1], "connect") != 0)) {
        fprintf(stderr, "usage: %s rr|connect PORT CONNECTIONS SIZE SECONDS WARMUP\n", argv[0]);
        return 2;
    }
    int churn = strcmp(argv[1], "connect") == 0;
    int connections = atoi(argv[3]);
    size = (size_t)atol(argv[4]);
    double seconds = atof(argv[5]), warmup = atof(argv[6]);
    signal(SIGPIPE, SIG_IGN);
    target.sin_family = AF_INET;
    target.sin_port = htons(atoi(argv[2]));
    inet_pton(AF_INET, "127.0.0.1", &target.sin_addr);
    stream = malloc(size * VARIANTS);
    for (size_t i = 0; i < size * VARIANTS; i++)
        stream[i] = (char)(i % 251);
    buffer = malloc(size);
    epollFd = epoll_create1(0);
    struct conn *conns = calloc((size_t)connections, sizeof *conns);
    for (int i = 0; i < connections; i++) {
        conns[i].message = (unsigned long)i;
        if (openConnection(&conns[i], !churn) < 0) {
            perror("connect");
            return 1;
        }
        if (!churn && sendMessage(&conns[i]) < 0) {
            perror("send");
            return 1;
        }
    }
    double started = clockSeconds(CLOCK_MONOTONIC);
    double windowStart = started + warmup, windowEnd = windowStart + seconds;
    double cpuStart = 0, measuredFrom = 0;
    int measuring = 0;
    long messages = 0;
    struct epoll_event events[MAX_EVENTS];
    for (;;) {
        double now = clockSeconds(CLOCK_MONOTONIC);
        if (!measuring && now >= windowStart) {
            measuring = 1;
            messages = 0;
            errors = 0;
            measuredFrom = now;
            cpuStart = clockSeconds(CLOCK_PROCESS_CPUTIME_ID);
        }
        if (measuring && now >= windowEnd)
            break;
        int ready = epoll_wait(epollFd, events, MAX_EVENTS, 10);
        for (int i = 0; i < ready; i++) {
            struct conn *c = events[i].data.ptr;
            int result = c->connecting ? (connected(c) < 0 ? -1 : 0) : readable(c);
            if (result == 0)
                continue;
            if (result > 0)
                messages++;
            else
                errors++;
            c->message++;
            if (!churn && result > 0) {
                if (sendMessage(c) == 0)
                    continue;
                errors++;
            }
            /* connect churn, or a broken connection: close, and again. */
            close(c->fd);
            for (int tries = 0; openConnection(c, 0) < 0; tries++) {
                if (++errors, tries == 1000) {
                    perror("connect");
                    return 1;
                }
            }
        }
    }
    double cpu = clockSeconds(CLOCK_PROCESS_CPUTIME_ID) - cpuStart;
    double elapsed = clockSeconds(CLOCK_MONOTONIC) - measuredFrom;
    printf("{\"messages\": %ld, \"seconds\": %.6f, \"cpu_s\": %.6f, \"errors\": %ld}\n", messages,
           elapsed, cpu, errors);
    return 0;
}
