/*
 * The bench's reference echo server: one thread, level-triggered epoll,
 * non-blocking sockets, as small as an echo server gets in C.
 *
 *   epoll_echo PORT        listens on 127.0.0.1:PORT (backlog 1024) until killed
 *
 * Each connection echoes what it reads; what the kernel does not take at
 * once waits in a per-connection buffer, and the connection stops reading
 * until it has gone out (so memory stays bounded by one read per
 * connection).  Compiled at bench time by tcplife.bench._native.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define READ_SIZE (256 * 1024)
#define MAX_EVENTS 512

struct conn {
    int fd;
    char *pending; /* unsent echo, or NULL */
    size_t pendingLength;
    size_t pendingSent;
};

static int epollFd;

static void watch(struct conn *c, int op, unsigned events) {
    struct epoll_event ev = {.events = events, .data.ptr = c};
    epoll_ctl(epollFd, op, c->fd, &ev);
}

static void drop(struct conn *c) {
    close(c->fd); /* also removes it from the epoll set */
    free(c->pending);
    free(c);
}

/* Send what is pending; 0 when all of it is gone, 1 when some waits. */
static int flush(struct conn *c) {
    while (c->pendingSent < c->pendingLength) {
        ssize_t n = send(c->fd, c->pending + c->pendingSent, c->pendingLength - c->pendingSent,
                         MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR)
                return 1;
            return -1;
        }
        c->pendingSent += (size_t)n;
    }
    free(c->pending);
    c->pending = NULL;
    c->pendingLength = c->pendingSent = 0;
    return 0;
}

static void readable(struct conn *c, char *buffer) {
    ssize_t n = recv(c->fd, buffer, READ_SIZE, 0);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
        drop(c);
        return;
    }
    if (n < 0)
        return;
    ssize_t sent = send(c->fd, buffer, (size_t)n, MSG_NOSIGNAL);
    if (sent < 0) {
        if (errno != EAGAIN && errno != EINTR) {
            drop(c);
            return;
        }
        sent = 0;
    }
    if (sent < n) {
        c->pendingLength = (size_t)(n - sent);
        c->pending = malloc(c->pendingLength);
        memcpy(c->pending, buffer + sent, c->pendingLength);
        c->pendingSent = 0;
        watch(c, EPOLL_CTL_MOD, EPOLLOUT);
    }
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s PORT\n", argv[0]);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    int listener = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    int one = 1;
    setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[1]))};
    inet_pton(AF_INET, "127.0.0.1", &address.sin_addr);
    if (bind(listener, (struct sockaddr *)&address, sizeof address) < 0 ||
        listen(listener, 1024) < 0) {
        perror("listen");
        return 1;
    }
    epollFd = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(epollFd, EPOLL_CTL_ADD, listener, &ev);
    char *buffer = malloc(READ_SIZE);
    struct epoll_event events[MAX_EVENTS];
    for (;;) {
        int ready = epoll_wait(epollFd, events, MAX_EVENTS, -1);
        for (int i = 0; i < ready; i++) {
            struct conn *c = events[i].data.ptr;
            if (c == NULL) {
                int fd;
                while ((fd = accept4(listener, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
                    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    struct conn *accepted = calloc(1, sizeof *accepted);
                    accepted->fd = fd;
                    watch(accepted, EPOLL_CTL_ADD, EPOLLIN);
                }
                continue;
            }
            if (c->pending != NULL) {
                int left = flush(c);
                if (left < 0)
                    drop(c);
                else if (left == 0)
                    watch(c, EPOLL_CTL_MOD, EPOLLIN);
                continue;
            }
            readable(c, buffer);
        }
    }
}
