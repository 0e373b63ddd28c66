/* A tiny HTTP/1.1 origin for unit tests (check_read, check_origin,
 * check_cache): one thread on a listening socket at 127.0.0.1, one
 * request per connection
 * (Connection: close), canned answers:
 *
 *   HEAD /a.img        200, Content-Length, ETag, Accept-Ranges
 *   GET  /a.img        Range: bytes=A-B -> 206 with Content-Range A-B/SIZE
 *                      (no Range: 200, the whole body); an If-Match or
 *                      If-Range naming another ETag -> 412
 *   anything else      404 (and /a.img too while `gone` is set)
 *
 * Body bytes are ck_byte(off, salt) (ck-engine.h).  Every request is
 * counted and its Range kept, so a test can say what reached the origin.
 * With `hold` set, a GET is counted and then not answered until
 * ck_httpd_release() (or 10 s): a test can see a fill in flight. */
#ifndef IC_CK_HTTPD_H
#define IC_CK_HTTPD_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define CK_HTTPD_MAX_LOG 32

struct ck_httpd {
    int lfd, port;
    pthread_t th;
    pthread_mutex_t lock; /* protects everything below */
    pthread_cond_t cond;  /* broadcast on every request and release */
    char etag[64];        /* current ETag, quoted */
    uint64_t size;
    unsigned salt;
    int hold, released, stop;
    int gone;             /* /a.img answers 404 (withdrawn) */
    int active;           /* connection threads running */
    int requests, gets, heads, answered412;
    char ranges[CK_HTTPD_MAX_LOG][64]; /* Range of each GET, "" for none */
};

static inline int ck_httpd_send(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* A header's value (case-insensitive name) into out, "" when absent. */
static inline void ck_httpd_header(const char *req, const char *name, char *out,
                            size_t len)
{
    size_t n = strlen(name);
    out[0] = '\0';
    for (const char *p = strstr(req, "\r\n"); p && p[2] != '\r';
         p = strstr(p + 2, "\r\n")) {
        if (strncasecmp(p + 2, name, n) == 0 && p[2 + n] == ':') {
            const char *v = p + 3 + n, *e = strstr(v, "\r\n");
            while (*v == ' ')
                v++;
            snprintf(out, len, "%.*s", (int)(e - v), v);
            return;
        }
    }
}

static inline void ck_httpd_answer(struct ck_httpd *h, int fd, const char *req)
{
    char method[16] = "", path[256] = "", range[64], cond[128], hdr[512];
    sscanf(req, "%15s %255s", method, path);
    ck_httpd_header(req, "Range", range, sizeof range);
    ck_httpd_header(req, "If-Match", cond, sizeof cond);
    if (cond[0] == '\0')
        ck_httpd_header(req, "If-Range", cond, sizeof cond);

    pthread_mutex_lock(&h->lock);
    /* gets, heads and holds concern the template's path only: a GET of
     * another path (the daemon's look for a block manifest beside the
     * template) is answered 404 at once and counted in `requests` only. */
    int ours = strcmp(path, "/a.img") == 0;
    int get = ours && strcmp(method, "GET") == 0;
    h->requests++;
    if (get && h->gets < CK_HTTPD_MAX_LOG)
        snprintf(h->ranges[h->gets], sizeof h->ranges[0], "%s", range);
    h->gets += get;
    h->heads += ours && strcmp(method, "HEAD") == 0;
    pthread_cond_broadcast(&h->cond);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += 10;
    while (get && h->hold && !h->released && !h->stop)
        if (pthread_cond_timedwait(&h->cond, &h->lock, &ts) != 0)
            break;
    char etag[64];
    snprintf(etag, sizeof etag, "%s", h->etag);
    uint64_t size = h->size;
    unsigned salt = h->salt;
    int gone = h->gone;
    int changed = cond[0] != '\0' && strcmp(cond, etag) != 0;
    h->answered412 += changed && get;
    pthread_mutex_unlock(&h->lock);

    if (gone || !ours) {
        snprintf(hdr, sizeof hdr, "HTTP/1.1 404 Not Found\r\n"
                 "Content-Length: 0\r\nConnection: close\r\n\r\n");
        ck_httpd_send(fd, hdr, strlen(hdr));
        return;
    }
    if (changed) {
        snprintf(hdr, sizeof hdr, "HTTP/1.1 412 Precondition Failed\r\n"
                 "Content-Length: 0\r\nETag: %s\r\nConnection: close\r\n\r\n",
                 etag);
        ck_httpd_send(fd, hdr, strlen(hdr));
        return;
    }
    unsigned long long a = 0, b = size - 1;
    int partial = range[0] != '\0' &&
                  sscanf(range, "bytes=%llu-%llu", &a, &b) == 2 && a <= b &&
                  b < size;
    if (partial)
        snprintf(hdr, sizeof hdr, "HTTP/1.1 206 Partial Content\r\n"
                 "Content-Length: %llu\r\nContent-Range: bytes %llu-%llu/%llu"
                 "\r\nETag: %s\r\nConnection: close\r\n\r\n",
                 b - a + 1, a, b, (unsigned long long)size, etag);
    else
        snprintf(hdr, sizeof hdr, "HTTP/1.1 200 OK\r\nContent-Length: %llu\r\n"
                 "ETag: %s\r\nAccept-Ranges: bytes\r\nConnection: close\r\n\r\n",
                 (unsigned long long)size, etag);
    if (ck_httpd_send(fd, hdr, strlen(hdr)) < 0 || !get)
        return;
    char buf[4096];
    for (uint64_t off = a; off <= b;) {
        size_t n = 0;
        for (; n < sizeof buf && off + n <= b; n++)
            buf[n] = (char)ck_byte(off + n, salt);
        if (ck_httpd_send(fd, buf, n) < 0)
            return;
        off += n;
    }
}

struct ck_httpd_conn {
    struct ck_httpd *h;
    int fd;
};

/* One connection (its own thread: a held answer must not stop others). */
static inline void *ck_httpd_conn_main(void *arg)
{
    struct ck_httpd_conn *k = arg;
    struct ck_httpd *h = k->h;
    struct timeval tv = {.tv_sec = 5};
    char req[8192];
    size_t len = 0;

    setsockopt(k->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(k->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    req[0] = '\0';
    while (len < sizeof req - 1 && strstr(req, "\r\n\r\n") == NULL) {
        ssize_t r = recv(k->fd, req + len, sizeof req - 1 - len, 0);
        if (r <= 0)
            break;
        len += (size_t)r;
        req[len] = '\0';
    }
    if (strstr(req, "\r\n\r\n"))
        ck_httpd_answer(h, k->fd, req);
    close(k->fd);
    free(k);
    pthread_mutex_lock(&h->lock);
    h->active--;
    pthread_cond_broadcast(&h->cond);
    pthread_mutex_unlock(&h->lock);
    return NULL;
}

static inline void *ck_httpd_main(void *arg)
{
    struct ck_httpd *h = arg;
    for (;;) {
        pthread_mutex_lock(&h->lock);
        int stop = h->stop;
        pthread_mutex_unlock(&h->lock);
        if (stop)
            break;
        struct pollfd p = {.fd = h->lfd, .events = POLLIN};
        if (poll(&p, 1, 100) <= 0)
            continue;
        int fd = accept(h->lfd, NULL, NULL);
        if (fd < 0)
            continue;
        struct ck_httpd_conn *k = malloc(sizeof *k);
        pthread_t th;
        pthread_attr_t at;
        pthread_attr_init(&at);
        pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
        pthread_mutex_lock(&h->lock);
        h->active++;
        pthread_mutex_unlock(&h->lock);
        if (k != NULL)
            *k = (struct ck_httpd_conn){h, fd};
        if (k == NULL || pthread_create(&th, &at, ck_httpd_conn_main, k)) {
            close(fd);
            free(k);
            pthread_mutex_lock(&h->lock);
            h->active--;
            pthread_mutex_unlock(&h->lock);
        }
        pthread_attr_destroy(&at);
    }
    return NULL;
}

/* Serve /a.img: `size` bytes of salt, ETag "v1". */
static inline void ck_httpd_start(struct ck_httpd *h, uint64_t size,
                                  unsigned salt)
{
    struct sockaddr_in sa = {.sin_family = AF_INET};
    socklen_t sl = sizeof sa;

    memset(h, 0, sizeof *h);
    pthread_mutex_init(&h->lock, NULL);
    pthread_cond_init(&h->cond, NULL);
    snprintf(h->etag, sizeof h->etag, "\"v1\"");
    h->size = size;
    h->salt = salt;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    h->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ck_assert_int_ge(h->lfd, 0);
    ck_assert_int_eq(bind(h->lfd, (struct sockaddr *)&sa, sizeof sa), 0);
    ck_assert_int_eq(listen(h->lfd, 16), 0);
    ck_assert_int_eq(getsockname(h->lfd, (struct sockaddr *)&sa, &sl), 0);
    h->port = ntohs(sa.sin_port);
    ck_assert_int_eq(pthread_create(&h->th, NULL, ck_httpd_main, h), 0);
}

static inline void ck_httpd_stop(struct ck_httpd *h)
{
    pthread_mutex_lock(&h->lock);
    h->stop = 1;
    pthread_cond_broadcast(&h->cond);
    pthread_mutex_unlock(&h->lock);
    pthread_join(h->th, NULL);
    pthread_mutex_lock(&h->lock);
    while (h->active > 0) /* they see stop: a held answer goes at once */
        pthread_cond_wait(&h->cond, &h->lock);
    pthread_mutex_unlock(&h->lock);
    close(h->lfd);
}

static inline void ck_httpd_release(struct ck_httpd *h)
{
    pthread_mutex_lock(&h->lock);
    h->released = 1;
    pthread_cond_broadcast(&h->cond);
    pthread_mutex_unlock(&h->lock);
}

/* Wait (10 s at most) until `gets` GETs have arrived; how many did. */
static inline int ck_httpd_wait_gets(struct ck_httpd *h, int gets)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += 10;
    pthread_mutex_lock(&h->lock);
    while (h->gets < gets)
        if (pthread_cond_timedwait(&h->cond, &h->lock, &ts) != 0)
            break;
    int n = h->gets;
    pthread_mutex_unlock(&h->lock);
    return n;
}

static inline int ck_httpd_count(struct ck_httpd *h, const int *counter)
{
    pthread_mutex_lock(&h->lock);
    int n = *counter;
    pthread_mutex_unlock(&h->lock);
    return n;
}

/* The curl environment must not send a test's requests to a proxy. */
static inline void ck_httpd_no_proxy(void)
{
    static const char *vars[] = {"http_proxy", "HTTP_PROXY", "https_proxy",
                                 "HTTPS_PROXY", "all_proxy", "ALL_PROXY"};
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++)
        unsetenv(vars[i]);
}

#endif
