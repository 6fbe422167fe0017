/* Hashing workers for the scan (see internal.h).
 *
 * One lock guards the queue, every job's segments and the buffers: the work
 * under it is a few pointer moves, and the hashing itself runs outside it.
 * Workers take jobs in the order they were opened and a job's segments in the
 * order they were pushed, so a job computes exactly what one thread would.
 * A range of the image pushed unread is read by the first of its jobs to get
 * there, outside the lock; a job that shares it waits for that read.
 *
 * Most files are small: their one segment and the close travel together, so
 * a job costs one hand-over.  For that the scan thread keeps the latest
 * segment of a job back until the next push or the close, and a job joins the
 * queue only with its first segment.
 *
 * Waking a thread costs about as much as hashing a small file, so nobody is
 * woken for each one: idle workers are woken for a batch of small jobs, for a
 * job that will have more segments, or when the scan thread has to wait; the
 * scan thread, once out of buffers, is woken when a quarter of them are free.
 *
 * Buffers come in two sizes, so that a small file does not hold a whole
 * segment's worth: with one size, the bound on memory was a bound of a few
 * dozen small files in flight, and the scan thread and the workers took
 * turns waiting on each other. */
#define WAKE_BATCH 8
#include "internal.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>

/* A buffer and what its segments share: who still needs it and, for a range
 * of the image, whether a worker has read it yet. */
enum { BUF_FILLED, BUF_UNREAD, BUF_READING };
struct shared_buf {
    unsigned users; /* the jobs that still need the bytes */
    int state;
    int read_rc;
};

struct seg {
    uint8_t *buf; /* NULL for FSP_SEG_ZEROS */
    struct shared_buf *shared;
    size_t len;
    uint64_t off; /* where an unread range is in the image */
    int kind;
    struct seg *next;
};

struct fsp_pool_job {
    const struct fsp_pool_ops *ops;
    void *ctx;
    struct seg *held; /* the scan thread's latest segment, not handed over yet */
    bool queued;      /* the scan thread's view: the workers know the job */
    struct seg *head, *tail;
    bool closed, done;
    int rc;
    struct fsp_pool_job *next; /* in the queue of jobs no worker took yet */
};

/* The buffers of one size: free, made, and the most there may be. */
struct buf_class {
    uint8_t **free_bufs;
    unsigned n_free, n_made, n_bufs;
    unsigned want_free; /* the scan thread waits for this many free buffers */
    size_t size;
};

enum { CLASS_SMALL, CLASS_FULL, N_CLASSES };

struct fsp_pool {
    pthread_mutex_t lock;
    pthread_cond_t work;    /* idle workers: a job or the stop */
    pthread_cond_t more;    /* the worker of an open job: a segment or the close */
    pthread_cond_t settled; /* the scan thread: a buffer came back or a job ended */
    pthread_cond_t filled;  /* workers of other jobs: a range was read */
    pthread_t *threads;
    unsigned n_threads;
    struct buf_class classes[N_CLASSES];
    unsigned n_queued; /* jobs in the queue */
    struct fsp_pool_job *queue, *queue_tail;
    bool stop;
};

static struct fsp_pool_job *take_job(fsp_pool *p)
{
    while (!p->queue && !p->stop)
        pthread_cond_wait(&p->work, &p->lock);
    struct fsp_pool_job *j = p->queue;
    if (j && !(p->queue = j->next))
        p->queue_tail = NULL;
    p->n_queued -= j != NULL;
    return j;
}

static struct seg *take_seg(fsp_pool *p, struct fsp_pool_job *j)
{
    while (!j->head && !j->closed)
        pthread_cond_wait(&p->more, &p->lock);
    struct seg *s = j->head;
    if (s && !(j->head = s->next))
        j->tail = NULL;
    return s;
}

/* An unread range is read by the first job that needs it; the others that
 * share it wait for that read.  Called and returns with the lock held. */
static int fill_seg(fsp_pool *p, struct fsp_pool_job *j, struct seg *s)
{
    struct shared_buf *b = s->shared;
    if (b && b->state == BUF_UNREAD) {
        b->state = BUF_READING;
        pthread_mutex_unlock(&p->lock);
        int rc = j->ops->read(j->ctx, s->buf, s->len, s->off);
        pthread_mutex_lock(&p->lock);
        b->read_rc = rc;
        b->state = BUF_FILLED;
        pthread_cond_broadcast(&p->filled);
    }
    while (b && b->state == BUF_READING)
        pthread_cond_wait(&p->filled, &p->lock);
    return b ? b->read_rc : 0;
}

/* A segment of LEN bytes is in a buffer of this class: the scan thread
 * pushes exactly the length it asked a buffer for. */
static struct buf_class *class_of(fsp_pool *p, size_t len)
{
    return &p->classes[len <= FSP_POOL_SMALL ? CLASS_SMALL : CLASS_FULL];
}

/* Called with the lock held. */
static void give_back(fsp_pool *p, uint8_t *buf, size_t len)
{
    struct buf_class *c = class_of(p, len);
    c->free_bufs[c->n_free++] = buf;
    if (c->want_free && c->n_free >= c->want_free)
        pthread_cond_signal(&p->settled);
}

static void release_seg(fsp_pool *p, struct seg *s)
{
    if (s->buf && !--s->shared->users) {
        give_back(p, s->buf, s->len);
        free(s->shared);
    }
    free(s);
}

/* Called and returns with the lock held. */
static void run_job(fsp_pool *p, struct fsp_pool_job *j)
{
    struct seg *s;
    while ((s = take_seg(p, j))) {
        if (!j->rc)
            j->rc = fill_seg(p, j, s);
        pthread_mutex_unlock(&p->lock);
        if (!j->rc)
            j->rc = j->ops->segment(j->ctx, s->buf, s->len, s->kind);
        pthread_mutex_lock(&p->lock);
        release_seg(p, s);
    }
    pthread_mutex_unlock(&p->lock);
    if (!j->rc)
        j->rc = j->ops->finish(j->ctx);
    pthread_mutex_lock(&p->lock);
    j->done = true;
    pthread_cond_signal(&p->settled);
}

static void *worker_main(void *arg)
{
    fsp_pool *p = arg;
    pthread_mutex_lock(&p->lock);
    struct fsp_pool_job *j;
    while ((j = take_job(p)))
        run_job(p, j);
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

static int start_workers(fsp_pool *p, unsigned n_threads)
{
    p->threads = calloc(n_threads, sizeof *p->threads);
    if (!p->threads)
        return -ENOMEM;
    for (; p->n_threads < n_threads; p->n_threads++) {
        int rc = pthread_create(&p->threads[p->n_threads], NULL, worker_main, p);
        if (rc)
            return -rc;
    }
    return 0;
}

static bool init_class(struct buf_class *c, unsigned n_bufs, size_t size)
{
    *c = (struct buf_class){.n_bufs = n_bufs, .size = size};
    c->free_bufs = calloc(n_bufs, sizeof *c->free_bufs);
    return c->free_bufs != NULL;
}

int fsp_pool_new(unsigned n_threads, unsigned n_bufs, fsp_pool **out)
{
    fsp_pool *p = calloc(1, sizeof *p);
    if (!p)
        return -ENOMEM;
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->work, NULL);
    pthread_cond_init(&p->more, NULL);
    pthread_cond_init(&p->settled, NULL);
    pthread_cond_init(&p->filled, NULL);
    n_bufs = n_bufs ? n_bufs : 1;
    /* as many small buffers as fit in a quarter of the full ones' memory */
    bool made = init_class(&p->classes[CLASS_SMALL], n_bufs * (FSP_POOL_SEG / FSP_POOL_SMALL) / 4,
                           FSP_POOL_SMALL) &&
                init_class(&p->classes[CLASS_FULL], n_bufs, FSP_POOL_SEG);
    int rc = made ? start_workers(p, n_threads ? n_threads : 1) : -ENOMEM;
    if (rc) {
        fsp_pool_free(p);
        return rc;
    }
    *out = p;
    return 0;
}

/* Every job must be closed and waited for before this. */
void fsp_pool_free(fsp_pool *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->lock);
    p->stop = true;
    pthread_cond_broadcast(&p->work);
    pthread_mutex_unlock(&p->lock);
    for (unsigned i = 0; i < p->n_threads; i++)
        pthread_join(p->threads[i], NULL);
    for (int c = 0; c < N_CLASSES; c++) {
        for (unsigned i = 0; i < p->classes[c].n_free; i++)
            free(p->classes[c].free_bufs[i]);
        free(p->classes[c].free_bufs);
    }
    free(p->threads);
    pthread_cond_destroy(&p->filled);
    pthread_cond_destroy(&p->settled);
    pthread_cond_destroy(&p->more);
    pthread_cond_destroy(&p->work);
    pthread_mutex_destroy(&p->lock);
    free(p);
}

int fsp_pool_open(fsp_pool *p, const struct fsp_pool_ops *ops, void *ctx, fsp_pool_job **out)
{
    struct fsp_pool_job *j = calloc(1, sizeof *j);
    if (!j)
        return -ENOMEM;
    j->ops = ops;
    j->ctx = ctx;
    *out = j;
    return 0;
}

/* Hands the held segment (if any) to the workers, and the close with CLOSE;
 * a job that was never queued joins the queue now. */
static void hand_over(fsp_pool *p, struct fsp_pool_job *j, bool close)
{
    struct seg *s = j->held;
    j->held = NULL;
    pthread_mutex_lock(&p->lock);
    if (s && j->tail)
        j->tail->next = s;
    else if (s)
        j->head = s;
    j->tail = s ? s : j->tail;
    j->closed = close;
    if (!j->queued) {
        if (p->queue_tail)
            p->queue_tail->next = j;
        else
            p->queue = j;
        p->queue_tail = j;
        if (++p->n_queued >= WAKE_BATCH || !close)
            pthread_cond_signal(&p->work);
    } else {
        pthread_cond_broadcast(&p->more);
    }
    j->queued = true;
    pthread_mutex_unlock(&p->lock);
}

uint8_t *fsp_pool_buffer(fsp_pool *p, size_t len)
{
    struct buf_class *c = class_of(p, len);
    pthread_mutex_lock(&p->lock);
    if (!c->n_free && c->n_made == c->n_bufs) {
        pthread_cond_broadcast(&p->work); /* the jobs waiting for a batch */
        c->want_free = c->n_bufs / 4 ? c->n_bufs / 4 : 1;
        while (c->n_free < c->want_free)
            pthread_cond_wait(&p->settled, &p->lock);
        c->want_free = 0;
    }
    uint8_t *buf = c->n_free ? c->free_bufs[--c->n_free] : NULL;
    bool make = !buf;
    if (make)
        c->n_made++; /* counted now, so that the bound holds while we allocate */
    pthread_mutex_unlock(&p->lock);
    if (make && !(buf = malloc(c->size))) {
        pthread_mutex_lock(&p->lock);
        c->n_made--;
        pthread_mutex_unlock(&p->lock);
    }
    return buf;
}

void fsp_pool_unused(fsp_pool *p, uint8_t *buf, size_t len)
{
    if (!buf)
        return;
    pthread_mutex_lock(&p->lock);
    give_back(p, buf, len);
    pthread_cond_broadcast(&p->settled);
    pthread_mutex_unlock(&p->lock);
}

/* Queues S on J, after the segment J holds back. */
static void hold(fsp_pool *p, struct fsp_pool_job *j, struct seg *s)
{
    if (j->held)
        hand_over(p, j, false);
    j->held = s;
}

/* Queues a copy of TEMPLATE on each job; the pool owns its buffer then. */
static int push_seg(fsp_pool *p, fsp_pool_job *const *jobs, unsigned n_jobs,
                    const struct seg *template, int state)
{
    struct seg *segs[FSP_POOL_SHARE_MAX] = {0};
    struct shared_buf *shared = template->buf ? malloc(sizeof *shared) : NULL;
    bool ok = n_jobs <= FSP_POOL_SHARE_MAX && (shared || !template->buf);
    for (unsigned i = 0; ok && i < n_jobs; i++)
        ok = (segs[i] = malloc(sizeof *segs[i])) != NULL;
    if (!ok) {
        for (unsigned i = 0; i < n_jobs && i < FSP_POOL_SHARE_MAX; i++)
            free(segs[i]);
        free(shared);
        fsp_pool_unused(p, template->buf, template->len);
        return -ENOMEM;
    }
    if (shared)
        *shared = (struct shared_buf){.users = n_jobs, .state = state};
    for (unsigned i = 0; i < n_jobs; i++) {
        *segs[i] = *template;
        segs[i]->shared = shared;
        hold(p, jobs[i], segs[i]);
    }
    return 0;
}

int fsp_pool_push(fsp_pool *p, fsp_pool_job *const *jobs, unsigned n_jobs, uint8_t *buf,
                  size_t len, int kind)
{
    struct seg s = {.buf = buf, .len = len, .kind = kind};
    return push_seg(p, jobs, n_jobs, &s, BUF_FILLED);
}

int fsp_pool_push_range(fsp_pool *p, fsp_pool_job *const *jobs, unsigned n_jobs, uint8_t *buf,
                        size_t len, uint64_t off)
{
    struct seg s = {.buf = buf, .len = len, .off = off, .kind = FSP_SEG_IMAGE};
    return push_seg(p, jobs, n_jobs, &s, BUF_UNREAD);
}

void fsp_pool_close(fsp_pool *p, fsp_pool_job *j)
{
    hand_over(p, j, true);
}

bool fsp_pool_done(fsp_pool *p, const fsp_pool_job *j)
{
    pthread_mutex_lock(&p->lock);
    bool done = j->done;
    pthread_mutex_unlock(&p->lock);
    return done;
}

int fsp_pool_wait(fsp_pool *p, fsp_pool_job *j)
{
    pthread_mutex_lock(&p->lock);
    if (!j->done)
        pthread_cond_broadcast(&p->work); /* J may be in a batch nobody was woken for */
    while (!j->done)
        pthread_cond_wait(&p->settled, &p->lock);
    pthread_mutex_unlock(&p->lock);
    int rc = j->rc;
    free(j);
    return rc;
}
