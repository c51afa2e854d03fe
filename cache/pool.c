/* pool.c — a tiny fixed thread pool for the store: the writer hashes and
 * compresses chunks on it while the caller keeps producing bytes, and
 * store_read_part decompresses chunks on it.  Jobs run in FIFO order; each
 * worker has an index so the store can give it its own zstd contexts. */
#include "store_internal.h"

#include <stdlib.h>

struct store_pool {
    pthread_mutex_t lock;
    pthread_cond_t work, done;
    pool_job *head, *tail;
    int stop;
    int n;
    pthread_t *threads;
    struct worker_arg { store_pool *p; int idx; } *args;
};

static void *worker_main(void *arg)
{
    struct worker_arg *wa = arg;
    store_pool *p = wa->p;
    pthread_mutex_lock(&p->lock);
    for (;;) {
        while (!p->head && !p->stop) pthread_cond_wait(&p->work, &p->lock);
        if (!p->head) break;   /* stop requested and queue drained */
        pool_job *j = p->head;
        p->head = j->next;
        if (!p->head) p->tail = NULL;
        pthread_mutex_unlock(&p->lock);
        j->fn(j, wa->idx);
        pthread_mutex_lock(&p->lock);
        j->done = 1;
        pthread_cond_broadcast(&p->done);
    }
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

store_pool *pool_new(int nthreads)
{
    store_pool *p = xcalloc(1, sizeof *p);
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->work, NULL);
    pthread_cond_init(&p->done, NULL);
    p->n = nthreads;
    p->threads = xcalloc((size_t)nthreads, sizeof *p->threads);
    p->args = xcalloc((size_t)nthreads, sizeof *p->args);
    for (int i = 0; i < nthreads; i++) {
        p->args[i].p = p;
        p->args[i].idx = i;
        if (pthread_create(&p->threads[i], NULL, worker_main, &p->args[i]) != 0)
            FLOW_BUG("cannot start store pool thread %d", i);
    }
    return p;
}

void pool_free(store_pool *p)
{
    if (!p) return;
    pthread_mutex_lock(&p->lock);
    p->stop = 1;
    pthread_cond_broadcast(&p->work);
    pthread_mutex_unlock(&p->lock);
    for (int i = 0; i < p->n; i++) pthread_join(p->threads[i], NULL);
    pthread_mutex_destroy(&p->lock);
    pthread_cond_destroy(&p->work);
    pthread_cond_destroy(&p->done);
    free(p->threads);
    free(p->args);
    free(p);
}

void pool_submit(store_pool *p, pool_job *j)
{
    pthread_mutex_lock(&p->lock);
    j->done = 0;
    j->next = NULL;
    if (p->tail) p->tail->next = j; else p->head = j;
    p->tail = j;
    pthread_cond_signal(&p->work);
    pthread_mutex_unlock(&p->lock);
}

void pool_wait(store_pool *p, pool_job *j)
{
    pthread_mutex_lock(&p->lock);
    while (!j->done) pthread_cond_wait(&p->done, &p->lock);
    pthread_mutex_unlock(&p->lock);
}

int pool_is_done(store_pool *p, pool_job *j)
{
    pthread_mutex_lock(&p->lock);
    int d = j->done;
    pthread_mutex_unlock(&p->lock);
    return d;
}
