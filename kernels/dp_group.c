/* dp_group.c — the processes that train one node together (dp.h): the
 * rendezvous (a file per rank in a shared folder, or rank 0 listening on a
 * TCP port) that tells every rank where the others listen, then a full TCP
 * mesh, and dp_exchange over it (every pair's bytes moved at once through
 * non-blocking sockets and poll, so no order of sends can deadlock).
 *
 * Wire: each mesh connection starts with a hello (magic "FLOWDP01", i32
 * rank, i32 world, tag[64]) from the connecting (higher) rank, answered by
 * the accepting rank's hello; each side checks the other's (so both fail,
 * each naming the mismatch); after that
 * only raw payload bytes whose lengths both sides know from the call. */
#include "dp.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define DP_MAX 64
#define TAG_LEN 64

struct dp_group {
    int rank, world;
    int fd[DP_MAX];         /* mesh sockets, -1 for this rank */
    double timeout_s;
    char tag[TAG_LEN];
};

typedef struct hello {
    char magic[8];
    int32_t rank, world;
    char tag[TAG_LEN];
} hello;

typedef struct endpoint {
    char addr[64];
    int32_t port;
} endpoint;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

int dp_rank(const dp_group *g) { return g ? g->rank : 0; }
int dp_world(const dp_group *g) { return g ? g->world : 1; }

void dp_group_free(dp_group *g)
{
    if (!g) return;
    for (int p = 0; p < g->world; p++)
        if (g->fd[p] >= 0) close(g->fd[p]);
    free(g);
}

/* blocking full write / read with the group's deadline */
static int io_full(int fd, void *p, size_t n, int wr, double deadline)
{
    char *q = p;
    while (n > 0) {
        struct pollfd pf = { fd, (short)(wr ? POLLOUT : POLLIN), 0 };
        int ms = (int)((deadline - now_s()) * 1000);
        if (ms <= 0) return -2;
        int r = poll(&pf, 1, ms);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return r == 0 ? -2 : -1;
        ssize_t k = wr ? send(fd, q, n, MSG_NOSIGNAL) : recv(fd, q, n, 0);
        if (k < 0 && (errno == EINTR || errno == EAGAIN)) continue;
        if (k <= 0) return -1;
        q += k;
        n -= (size_t)k;
    }
    return 0;
}

static int listen_on(int port, int backlog, int *lfd, int *got_port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_ANY) };
    socklen_t al = sizeof a;
    if (bind(fd, (struct sockaddr *)&a, sizeof a) || listen(fd, backlog) ||
        getsockname(fd, (struct sockaddr *)&a, &al)) {
        close(fd);
        return -1;
    }
    *lfd = fd;
    *got_port = ntohs(a.sin_port);
    return 0;
}

/* one connect attempt to addr:port; -1 when refused or unreachable */
static int connect_once(const char *addr, int port)
{
    char ps[16];
    snprintf(ps, sizeof ps, "%d", port);
    struct addrinfo hints = { .ai_family = AF_INET, .ai_socktype = SOCK_STREAM }, *ai = NULL;
    if (getaddrinfo(addr, ps, &hints, &ai) || !ai) return -1;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd >= 0 && connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
        close(fd);
        fd = -1;
    }
    freeaddrinfo(ai);
    if (fd >= 0) {
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    return fd;
}

static int accept_by(int lfd, double deadline)
{
    for (;;) {
        struct pollfd pf = { lfd, POLLIN, 0 };
        int ms = (int)((deadline - now_s()) * 1000);
        if (ms <= 0) return -2;
        int r = poll(&pf, 1, ms);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return r == 0 ? -2 : -1;
        int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0 && errno == EINTR) continue;
        if (fd >= 0) {
            int one = 1;
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        }
        return fd;
    }
}

/* the address other ranks reach this one at */
static void my_addr(char out[64])
{
    const char *env = getenv("FLOW_DP_ADDR");
    snprintf(out, 64, "127.0.0.1");
    if (env && *env) {
        snprintf(out, 64, "%s", env);
        return;
    }
    char host[256];
    struct addrinfo hints = { .ai_family = AF_INET, .ai_socktype = SOCK_STREAM }, *ai = NULL;
    if (gethostname(host, sizeof host) == 0 && getaddrinfo(host, NULL, &hints, &ai) == 0 && ai) {
        inet_ntop(AF_INET, &((struct sockaddr_in *)ai->ai_addr)->sin_addr, out, 64);
        freeaddrinfo(ai);
    }
}

static void hello_make(hello *h, const dp_group *g)
{
    memset(h, 0, sizeof *h);
    memcpy(h->magic, "FLOWDP01", 8);
    h->rank = g->rank;
    h->world = g->world;
    memcpy(h->tag, g->tag, TAG_LEN);
}

/* checks a peer's hello against this rank's */
static int hello_check(const hello *h, const dp_group *g, const char *where, flow_err *e)
{
    if (memcmp(h->magic, "FLOWDP01", 8) != 0)
        return flow_fail(e, FLOW_E_IO, "data-parallel: %s: a connection that is not a flow rank", where);
    if (h->world != g->world || h->rank < 0 || h->rank >= g->world)
        return flow_fail(e, FLOW_E_PARAM, "data-parallel: %s: rank %d says the world has %d processes, "
                         "this rank %d says %d; give every rank the same FLOW_DP_WORLD", where,
                         (int)h->rank, (int)h->world, g->rank, g->world);
    if (strncmp(h->tag, g->tag, TAG_LEN) != 0)
        return flow_fail(e, FLOW_E_PARAM, "data-parallel: %s: rank %d trains node %.32s, this rank %d "
                         "trains %.32s; every rank must build the same graph with the same cache state",
                         where, (int)h->rank, h->tag, g->rank, g->tag);
    return 0;
}

/* Full mesh: connect to every lower rank (retrying until the deadline),
 * accept every higher one on lfd. */
static int mesh(dp_group *g, const endpoint *ep, int lfd, double deadline, flow_err *e)
{
    hello mine;
    hello_make(&mine, g);
    for (int p = 0; p < g->rank; p++) {
        int fd = -1;
        while ((fd = connect_once(ep[p].addr, ep[p].port)) < 0) {
            if (now_s() > deadline)
                return flow_fail(e, FLOW_E_IO, "data-parallel: rank %d cannot connect to rank %d at "
                                 "%s:%d within %.0f s", g->rank, p, ep[p].addr, (int)ep[p].port, g->timeout_s);
            usleep(20000);
        }
        g->fd[p] = fd;
        hello back;
        if (io_full(fd, &mine, sizeof mine, 1, deadline))
            return flow_fail(e, FLOW_E_IO, "data-parallel: rank %d: lost rank %d while connecting", g->rank, p);
        if (io_full(fd, &back, sizeof back, 0, deadline))
            return flow_fail(e, FLOW_E_IO, "data-parallel: rank %d: rank %d refused this rank (see its "
                             "log: another node, world or a duplicate rank?)", g->rank, p);
        int rc = hello_check(&back, g, "mesh", e);
        if (rc) return rc;
    }
    for (int k = g->rank + 1; k < g->world; k++) {
        int fd = accept_by(lfd, deadline);
        if (fd < 0)
            return flow_fail(e, FLOW_E_IO, "data-parallel: rank %d: %d higher rank(s) did not connect "
                             "within %.0f s", g->rank, g->world - k, g->timeout_s);
        hello h;
        if (io_full(fd, &h, sizeof h, 0, deadline)) {
            close(fd);
            return flow_fail(e, FLOW_E_IO, "data-parallel: rank %d: a peer hung up while connecting", g->rank);
        }
        /* answer first, so a refused peer can say why too */
        (void)io_full(fd, &mine, sizeof mine, 1, deadline);   /* a lost peer shows below or later */
        int rc = hello_check(&h, g, "mesh", e);
        if (!rc && (h.rank <= g->rank || g->fd[h.rank] >= 0))
            rc = flow_fail(e, FLOW_E_PARAM, "data-parallel: rank %d connected twice (two processes "
                           "with FLOW_DP_RANK=%d?)", (int)h.rank, (int)h.rank);
        if (rc) {
            close(fd);
            return rc;
        }
        g->fd[h.rank] = fd;
    }
    for (int p = 0; p < g->world; p++)
        if (g->fd[p] >= 0) fcntl(g->fd[p], F_SETFL, fcntl(g->fd[p], F_GETFL) | O_NONBLOCK);
    return 0;
}

/* ---- file rendezvous: DIR/<tag>/rank-R holds "addr port" ---------------- */
static int rdv_file(dp_group *g, const char *dir, int lfd, int port, double deadline, flow_err *e)
{
    char sub[4096], path[4200], tmp[4300];
    snprintf(sub, sizeof sub, "%s/%s", dir, g->tag);
    if ((mkdir(dir, 0777) && errno != EEXIST) || (mkdir(sub, 0777) && errno != EEXIST))
        return flow_fail(e, FLOW_E_IO, "data-parallel: cannot create the rendezvous folder %s: %s",
                         sub, strerror(errno));
    endpoint ep[DP_MAX];
    memset(ep, 0, sizeof ep);
    my_addr(ep[g->rank].addr);
    ep[g->rank].port = port;
    snprintf(path, sizeof path, "%s/rank-%d", sub, g->rank);
    snprintf(tmp, sizeof tmp, "%s.tmp%d", path, (int)getpid());
    FILE *f = fopen(tmp, "w");
    if (!f || fprintf(f, "%s %d\n", ep[g->rank].addr, port) < 0 || fclose(f) || rename(tmp, path))
        return flow_fail(e, FLOW_E_IO, "data-parallel: cannot write %s: %s", path, strerror(errno));
    /* lower ranks' files (the ones this rank connects to) */
    for (int p = 0; p < g->rank; p++) {
        char pp[4200];
        snprintf(pp, sizeof pp, "%s/rank-%d", sub, p);
        for (;;) {
            FILE *r = fopen(pp, "r");
            int ok = r && fscanf(r, "%63s %d", ep[p].addr, &ep[p].port) == 2;
            if (r) fclose(r);
            if (ok) break;
            if (now_s() > deadline)
                return flow_fail(e, FLOW_E_IO, "data-parallel: rank %d waited %.0f s for rank %d's "
                                 "rendezvous file %s; start every rank (FLOW_DP_RANK 0..%d)",
                                 g->rank, g->timeout_s, p, pp, g->world - 1);
            usleep(20000);
        }
    }
    int rc = mesh(g, ep, lfd, deadline, e);
    unlink(path);   /* every peer that needed it has connected */
    return rc;
}

/* ---- TCP rendezvous: rank 0 listens on HOST:PORT and hands out the table -- */
static int rdv_tcp(dp_group *g, const char *host, int rport, int lfd, int port, double deadline,
                   flow_err *e)
{
    endpoint ep[DP_MAX];
    memset(ep, 0, sizeof ep);
    my_addr(ep[g->rank].addr);
    ep[g->rank].port = port;
    hello mine;
    hello_make(&mine, g);
    if (g->rank == 0) {
        int rfd, got, fds[DP_MAX];
        if (listen_on(rport, g->world, &rfd, &got))
            return flow_fail(e, FLOW_E_IO, "data-parallel: rank 0 cannot listen on port %d: %s",
                             rport, strerror(errno));
        int rc = 0, n = 0;
        for (; !rc && n < g->world - 1; n++) {
            hello h;
            endpoint x;
            fds[n] = accept_by(rfd, deadline);
            if (fds[n] < 0) {
                rc = flow_fail(e, FLOW_E_IO, "data-parallel: rank 0: %d rank(s) did not reach %s:%d "
                               "within %.0f s", g->world - 1 - n, host, rport, g->timeout_s);
                break;
            }
            if (io_full(fds[n], &h, sizeof h, 0, deadline) || io_full(fds[n], &x, sizeof x, 0, deadline) ||
                io_full(fds[n], &mine, sizeof mine, 1, deadline))  /* answered, so a refused peer says why */
                rc = flow_fail(e, FLOW_E_IO, "data-parallel: rank 0: a peer hung up during the rendezvous");
            if (!rc) rc = hello_check(&h, g, "rendezvous", e);
            if (!rc && (h.rank == 0 || ep[h.rank].port))
                rc = flow_fail(e, FLOW_E_PARAM, "data-parallel: rank %d came twice to the rendezvous",
                               (int)h.rank);
            if (!rc) {
                x.addr[63] = 0;
                ep[h.rank] = x;
            }
        }
        for (int k = 0; k < n; k++) {
            if (!rc && io_full(fds[k], ep, sizeof ep, 1, deadline))
                rc = flow_fail(e, FLOW_E_IO, "data-parallel: rank 0: a peer hung up during the rendezvous");
            if (fds[k] >= 0) close(fds[k]);
        }
        close(rfd);
        if (rc) return rc;
    } else {
        int fd;
        while ((fd = connect_once(host, rport)) < 0) {
            if (now_s() > deadline)
                return flow_fail(e, FLOW_E_IO, "data-parallel: rank %d cannot reach rank 0's rendezvous "
                                 "at %s:%d within %.0f s", g->rank, host, rport, g->timeout_s);
            usleep(20000);
        }
        hello back;
        int bad = io_full(fd, &mine, sizeof mine, 1, deadline) ||
                  io_full(fd, &ep[g->rank], sizeof ep[0], 1, deadline) ||
                  io_full(fd, &back, sizeof back, 0, deadline);
        int rc = bad ? 0 : hello_check(&back, g, "rendezvous", e);
        if (!bad && !rc) bad = io_full(fd, ep, sizeof ep, 0, deadline);
        close(fd);
        if (rc) return rc;
        if (bad)
            return flow_fail(e, FLOW_E_IO, "data-parallel: rank %d: rank 0 closed the rendezvous (it "
                             "refused this rank; see its log)", g->rank);
        for (int p = 0; p < g->world; p++) ep[p].addr[63] = 0;
    }
    return mesh(g, ep, lfd, deadline, e);
}

int dp_group_join(const char *rendezvous, int rank, int world, const char *tag,
                  double timeout_s, dp_group **out, flow_err *e)
{
    *out = NULL;
    if (world < 2 || world > DP_MAX || rank < 0 || rank >= world)
        return flow_fail(e, FLOW_E_PARAM, "data-parallel: rank %d of %d processes is invalid (need "
                         "2 <= world <= %d, 0 <= rank < world)", rank, world, DP_MAX);
    int is_file = strncmp(rendezvous, "file:", 5) == 0, is_tcp = strncmp(rendezvous, "tcp:", 4) == 0;
    char host[256] = "";
    int rport = 0;
    if (is_tcp) {
        const char *colon = strrchr(rendezvous + 4, ':');
        char *end = NULL;
        long pv = colon ? strtol(colon + 1, &end, 10) : 0;
        if (!colon || colon == rendezvous + 4 || (size_t)(colon - rendezvous - 4) >= sizeof host ||
            !end || *end || pv < 1 || pv > 65535)
            return flow_fail(e, FLOW_E_PARAM, "data-parallel: FLOW_DP_RENDEZVOUS=%s: expected "
                             "tcp:HOST:PORT (port 1..65535)", rendezvous);
        memcpy(host, rendezvous + 4, (size_t)(colon - rendezvous - 4));
        rport = (int)pv;
    } else if (!is_file || !rendezvous[5]) {
        return flow_fail(e, FLOW_E_PARAM, "data-parallel: FLOW_DP_RENDEZVOUS=%s: expected file:DIR "
                         "or tcp:HOST:PORT", rendezvous);
    }
    dp_group *g = calloc(1, sizeof *g);
    if (!g) return flow_fail(e, FLOW_E_NOMEM, "data-parallel: out of memory");
    g->rank = rank;
    g->world = world;
    g->timeout_s = timeout_s;
    snprintf(g->tag, sizeof g->tag, "%s", tag);
    for (int p = 0; p < DP_MAX; p++) g->fd[p] = -1;
    int lfd, port;
    if (listen_on(0, world, &lfd, &port)) {
        dp_group_free(g);
        return flow_fail(e, FLOW_E_IO, "data-parallel: cannot open a listening socket: %s", strerror(errno));
    }
    double deadline = now_s() + timeout_s;
    int rc = is_file ? rdv_file(g, rendezvous + 5, lfd, port, deadline, e)
                     : rdv_tcp(g, host, rport, lfd, port, deadline, e);
    close(lfd);
    if (rc) {
        dp_group_free(g);
        return rc;
    }
    *out = g;
    return 0;
}

/* an integer environment variable, or def when unset */
static int env_int(const char *name, const char *alt1, const char *alt2, int def, int *out, flow_err *e)
{
    const char *names[3] = { name, alt1, alt2 };
    for (int i = 0; i < 3; i++) {
        const char *v = getenv(names[i]);
        if (!v || !*v) continue;
        char *end;
        long x = strtol(v, &end, 10);
        if (*end || x < 0 || x > 1 << 20)
            return flow_fail(e, FLOW_E_PARAM, "data-parallel: %s=%s is not a count", names[i], v);
        *out = (int)x;
        return 0;
    }
    *out = def;
    return 0;
}

int dp_group_from_env(const char *tag, dp_group **out, flow_err *e)
{
    *out = NULL;
    int world, rank, timeout;
    int rc = env_int("FLOW_DP_WORLD", "OMPI_COMM_WORLD_SIZE", "PMI_SIZE", 1, &world, e);
    if (!rc) rc = env_int("FLOW_DP_RANK", "OMPI_COMM_WORLD_RANK", "PMI_RANK", 0, &rank, e);
    if (!rc) rc = env_int("FLOW_DP_TIMEOUT", "FLOW_DP_TIMEOUT", "FLOW_DP_TIMEOUT", 600, &timeout, e);
    if (rc || world <= 1) return rc;
    const char *rdv = getenv("FLOW_DP_RENDEZVOUS");
    if (!rdv || !*rdv)
        return flow_fail(e, FLOW_E_PARAM, "data-parallel: %d processes but no FLOW_DP_RENDEZVOUS "
                         "(file:DIR or tcp:HOST:PORT) to find each other", world);
    return dp_group_join(rdv, rank, world, tag, timeout > 0 ? timeout : 600, out, e);
}

/* ---- exchange ----------------------------------------------------------------- */
int dp_exchange(dp_group *g, const void *const *sbuf, const size_t *send_len,
                void *const *rbuf, const size_t *recv_len, flow_err *e)
{
    int me = dp_rank(g), world = dp_world(g);
    if (recv_len[me] != send_len[me])
        return flow_fail(e, FLOW_E_PARAM, "data-parallel: exchange with itself of %zu bytes, expecting %zu",
                         send_len[me], recv_len[me]);
    if (send_len[me]) memmove(rbuf[me], sbuf[me], send_len[me]);
    if (world == 1) return 0;
    size_t sent[DP_MAX] = {0}, got[DP_MAX] = {0};
    double deadline = now_s() + g->timeout_s;
    for (;;) {
        struct pollfd pf[DP_MAX];
        int peer[DP_MAX], np = 0;
        for (int p = 0; p < world; p++) {
            if (p == me) continue;
            short ev = (short)((sent[p] < send_len[p] ? POLLOUT : 0) | (got[p] < recv_len[p] ? POLLIN : 0));
            if (!ev) continue;
            pf[np] = (struct pollfd){ g->fd[p], ev, 0 };
            peer[np++] = p;
        }
        if (np == 0) return 0;
        int ms = (int)((deadline - now_s()) * 1000);
        int r = ms > 0 ? poll(pf, (nfds_t)np, ms) : 0;
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0)
            return flow_fail(e, FLOW_E_IO, "data-parallel: rank %d: no progress from rank %d for %.0f s "
                             "(is it still running?)", me, peer[0], g->timeout_s);
        for (int i = 0; i < np; i++) {
            int p = peer[i];
            if (pf[i].revents & POLLIN) {
                ssize_t k = recv(g->fd[p], (char *)rbuf[p] + got[p], recv_len[p] - got[p], 0);
                if (k == 0 || (k < 0 && errno != EAGAIN && errno != EINTR))
                    return flow_fail(e, FLOW_E_IO, "data-parallel: rank %d lost the connection to rank %d "
                                     "(its process ended or failed; see its log)", me, p);
                if (k > 0) got[p] += (size_t)k;
            }
            if (pf[i].revents & POLLOUT) {
                ssize_t k = send(g->fd[p], (const char *)sbuf[p] + sent[p], send_len[p] - sent[p],
                                 MSG_NOSIGNAL);
                if (k < 0 && errno != EAGAIN && errno != EINTR)
                    return flow_fail(e, FLOW_E_IO, "data-parallel: rank %d lost the connection to rank %d "
                                     "(its process ended or failed; see its log)", me, p);
                if (k > 0) sent[p] += (size_t)k;
            }
            if ((pf[i].revents & (POLLERR | POLLHUP | POLLNVAL)) && !(pf[i].revents & POLLIN))
                return flow_fail(e, FLOW_E_IO, "data-parallel: rank %d lost the connection to rank %d "
                                 "(its process ended or failed; see its log)", me, p);
        }
    }
}

int dp_allgather(dp_group *g, const void *mine, size_t len, void *all, flow_err *e)
{
    int world = dp_world(g);
    const void *send[DP_MAX];
    void *recv[DP_MAX];
    size_t sl[DP_MAX], rl[DP_MAX];
    for (int q = 0; q < world && q < DP_MAX; q++) {
        send[q] = mine;
        sl[q] = len;
        recv[q] = (char *)all + (size_t)q * len;
        rl[q] = len;
    }
    return dp_exchange(g, send, sl, recv, rl, e);
}

int dp_broadcast(dp_group *g, int root, void *buf, size_t len, flow_err *e)
{
    int world = dp_world(g), rank = dp_rank(g);
    if (root < 0 || root >= world)
        return flow_fail(e, FLOW_E_PARAM, "dp_broadcast: root %d is not a rank of %d", root, world);
    if (world == 1) return 0;
    const void *send[DP_MAX];
    void *recv[DP_MAX];
    size_t sl[DP_MAX], rl[DP_MAX];
    for (int q = 0; q < world && q < DP_MAX; q++) {
        send[q] = buf;
        sl[q] = rank == root ? len : 0;
        recv[q] = q == root ? buf : NULL;    /* root's own: a memmove onto itself */
        rl[q] = q == root ? len : 0;
    }
    return dp_exchange(g, send, sl, recv, rl, e);
}
