/* store_internal.h — private declarations shared by the files of the cache
 * library (never included outside cache/).
 *
 *   store.c     environment, meta record, transactions with map growth,
 *               sync modes, store_stats
 *   pool.c      the small thread pool that hashes/compresses/decompresses
 *   chunk.c     chunk value format, codecs (zstd, 4-byte shuffle), hash set
 *   manifest.c  artifact manifest encoding/decoding, content hashes
 *   writer.c    store_writer: streaming parts into chunks, commit
 *   reader.c    get, resolve, logs, streaming reader, foreach
 *   records.c   node history, stat cache, leases
 *   checkpoint.c  checkpoints as chunked blobs
 *   gc.c        gc and verify
 *   compact.c   the open lock and the compacting copy (store_compact)
 */
#ifndef FLOW_STORE_INTERNAL_H
#define FLOW_STORE_INTERNAL_H

#include "cache.h"
#include <lmdb.h>
#include <pthread.h>
#include <sys/types.h>
#include <zstd.h>

#define STORE_MAGIC "FLOWSTOR"          /* 8 bytes, first in the meta record */
#define STORE_FORMAT_VERSION 1u
#define STORE_HASH_ALGO "xxh3-128"
#define STORE_CHUNK_SIZE (2u << 20)     /* fixed raw chunk size: 2 MiB */
#define STORE_ZSTD_LEVEL 3
/* Level for the compressible byte planes of shuffled float chunks (the
 * sign/exponent plane).  Measured on normal(0, 0.02) float32 (2 MiB chunks):
 * that plane has ~2.7 bits/byte of order-0 entropy and few long matches;
 * zstd level 1 stores it in 0.368 of its size at ~1.4 s/GiB of chunk CPU,
 * level 3 in 0.418 at ~3.3 s/GiB (its match finder wastes time on short
 * matches).  So level 1 is both smaller and >2x faster here; everything
 * else (byte parts, unshuffled float chunks) uses STORE_ZSTD_LEVEL. */
#ifndef STORE_ZSTD_PLANE_LEVEL
#define STORE_ZSTD_PLANE_LEVEL 1
#endif
#define STORE_THREADS 2                 /* pool threads per store */

enum {
    DB_META, DB_CHUNKS, DB_ARTIFACTS, DB_LOGS, DB_HISTORY, DB_STATCACHE,
    DB_LEASES, DB_CHECKPOINTS, DB_COUNT
};

/* ---- pool.c ---------------------------------------------------------- */
typedef struct store_pool store_pool;
typedef struct pool_job {
    void (*fn)(struct pool_job *j, int worker);  /* worker: 0..STORE_THREADS-1 */
    struct pool_job *next;
    int done;                                    /* guarded by the pool lock */
} pool_job;
store_pool *pool_new(int nthreads);
void pool_free(store_pool *p);
void pool_submit(store_pool *p, pool_job *j);
void pool_wait(store_pool *p, pool_job *j);
int pool_is_done(store_pool *p, pool_job *j);

/* ---- the store -------------------------------------------------------- */
struct flow_store {
    char *dir;
    MDB_env *env;
    MDB_dbi dbi[DB_COUNT];
    int readonly;
    int sync_mode;                  /* STORE_SYNC_* */
    size_t map_size, max_map_size;
    /* Every transaction of this process holds resize_lock shared;
     * mdb_env_set_mapsize (which needs no live transaction in the process)
     * holds it exclusively. */
    pthread_rwlock_t resize_lock;
    pthread_mutex_t pool_lock;      /* lazy creation of pool and contexts */
    store_pool *pool;
    ZSTD_CCtx *cctx[STORE_THREADS];
    ZSTD_DCtx *dctx[STORE_THREADS];
    char *scratch[STORE_THREADS];   /* STORE_CHUNK_SIZE each, for shuffling */
    pid_t pid;                      /* process that opened it */
    int lock_fd;                    /* shared flock on open.lock (compact.c), or -1 */
    void *stat_pending;             /* buffered stat-cache puts (records.c) */
    size_t nstat, capstat;
    uint32_t *stat_slot;            /* their index by path: entry + 1, 0 = empty */
    size_t synced_txnid;            /* last LMDB transaction id this handle flushed (or found at open) */
    int syncs;                      /* fdatasyncs issued by store_sync (store_sync_count) */
};

/* The time the oldest live lease was taken (INT64_MAX if none), read in
 * txn (records.c).  Used by gc: chunks written during a running build are
 * kept whatever their age. */
int store_oldest_live_lease(flow_store *s, MDB_txn *txn, int64_t *oldest);

/* Writes the buffered stat-cache entries (records.c); release frees the
 * buffer without writing. */
int store_stat_flush(flow_store *s, flow_err *err);
void store_stat_release(flow_store *s);

store_pool *store_get_pool(flow_store *s);   /* creates pool + contexts once */

/* Chunks this writer compressed in the caller thread (byte chunks of at
 * most STORE_INLINE_MAX bytes, writer.c) rather than on the pool. */
#define STORE_INLINE_MAX (16u << 10)
long long store_writer_inlined(const store_writer *w);

/* Opens dir/open.lock and takes a shared flock on it, waiting while a
 * compaction holds it (compact.c).  Returns the fd (close it after the
 * LMDB environment) or -1 when the lock file cannot be opened. */
int store_lock_shared(const char *dir, int readonly);

/* Reads the environment's current map size into s->map_size (txn.c). */
void store_refresh_map_size(flow_store *s);
/* A read transaction (takes resize_lock shared; adopts a map grown by
 * another process).  End it with store_txn_end. */
int store_txn_read(flow_store *s, MDB_txn **txn, flow_err *err);
void store_txn_end(flow_store *s, MDB_txn *txn);
/* Opens a read transaction and looks up the record under a 16-byte key in
 * table db.  On success *txn stays open (v points into it; end it with
 * store_txn_end); otherwise it is ended and err says why: FLOW_E_NOTFOUND
 * with `missing` formatted with (key hex, cache dir), or the LMDB error
 * while `doing`. */
int store_get_keyed(flow_store *s, int db, const flow_hash *key, MDB_txn **txn,
                    MDB_val *v, const char *missing, const char *doing, flow_err *err);

/* Runs fn inside a write transaction and commits it.  fn returns 0, a
 * negative FLOW_E* code (err filled), or a raw LMDB code; MDB_MAP_FULL
 * (from fn or from commit) aborts, doubles the map and reruns fn, so fn
 * must be re-runnable from scratch.  nosync: in STORE_SYNC_FULL mode,
 * commit with one fsync and no meta-page fsync (chunk batches and small
 * records whose durability comes with the next fully synced commit). */
typedef int (*store_write_fn)(flow_store *s, MDB_txn *txn, void *arg, flow_err *err);
int store_write(flow_store *s, const char *what, store_write_fn fn, void *arg,
                int nosync, flow_err *err);
/* Converts an LMDB/errno code into a FLOW_E* error naming the cache and what. */
int store_mdb_fail(flow_store *s, flow_err *err, int rc, const char *what);

/* little-endian encoding helpers */
static inline void put_u16(unsigned char *p, uint16_t v) { p[0] = (unsigned char)v; p[1] = (unsigned char)(v >> 8); }
static inline void put_u32(unsigned char *p, uint32_t v) { for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i)); }
static inline void put_u64(unsigned char *p, uint64_t v) { for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i)); }
static inline uint16_t get_u16(const unsigned char *p) { return (uint16_t)(p[0] | p[1] << 8); }
static inline uint32_t get_u32(const unsigned char *p) { uint32_t v = 0; for (int i = 3; i >= 0; i--) v = v << 8 | p[i]; return v; }
static inline uint64_t get_u64(const unsigned char *p) { uint64_t v = 0; for (int i = 7; i >= 0; i--) v = v << 8 | p[i]; return v; }

int64_t store_now(void);    /* unix seconds */

/* ---- chunk.c ---------------------------------------------------------- */
/* Chunk value in DB_CHUNKS (key: the 16-byte XXH3-128 of the raw bytes):
 *   u8 codec (CODEC_*), u8 version (1), u16 0, u32 raw_len, i64 created,
 *   then the payload (raw bytes, or a zstd frame). */
#define CHUNK_HDR 16
#define CHUNK_VERSION 1
/* CODEC_SHUF4_PLANES: the chunk is 4-byte shuffled into byte planes, each
 * plane zstd-compressed or (when its sampled entropy says it is noise, or
 * compression does not shrink it) stored raw; layout in chunk.c. */
enum { CODEC_RAW = 0, CODEC_ZSTD = 1, CODEC_SHUF4_PLANES = 3 };

typedef struct chunk_ref {
    flow_hash h;
    uint32_t len;       /* raw bytes */
} chunk_ref;

/* Encodes raw[0..n) into out (capacity chunk_bound(n)) choosing the codec:
 * mode CHUNK_BYTES tries zstd; CHUNK_F32_TRY tries zstd and shuffled planes;
 * CHUNK_F32_SHUF / CHUNK_F32_PLAIN use the decided one.  Falls back to raw
 * when compression does not shrink.  Returns the value length; *codec is
 * set.  scratch: n bytes. */
enum { CHUNK_BYTES, CHUNK_F32_TRY, CHUNK_F32_SHUF, CHUNK_F32_PLAIN };
size_t chunk_bound(size_t n);
size_t chunk_encode(ZSTD_CCtx *cctx, const void *raw, size_t n, int mode, int64_t created,
                    char *out, char *out2, char *scratch, int *codec);
/* Decodes a stored value into dst (expect_len bytes) and checks its hash.
 * Returns 0 or FLOW_E_CORRUPT with why filled (no subject: the caller
 * names artifact, part and chunk).  scratch: STORE_CHUNK_SIZE bytes, used
 * for shuffled chunks. */
int chunk_decode(ZSTD_DCtx *dctx, const void *val, size_t vlen, const flow_hash *h,
                 uint32_t expect_len, char *dst, char *scratch, char *why, size_t whylen);
/* Fetches chunk h through its own short read transaction and decodes it.
 * Returns 0, FLOW_E_CORRUPT / FLOW_E_NOTFOUND with why, or another code. */
int chunk_fetch(flow_store *s, const flow_hash *h, uint32_t expect_len, char *dst,
                ZSTD_DCtx *dctx, char *scratch, char *why, size_t whylen, flow_err *err);
void shuffle4(const unsigned char *in, unsigned char *out, size_t n);
void unshuffle4(const unsigned char *in, unsigned char *out, size_t n);

/* Open-addressing set of hashes with a 64-bit value each. */
typedef struct hset {
    flow_hash *keys;
    uint64_t *vals;
    unsigned char *used;
    size_t n, cap;
} hset;
void hset_init(hset *s);
void hset_release(hset *s);
/* Returns a pointer to the value slot; *added is 1 when newly inserted. */
uint64_t *hset_put(hset *s, const flow_hash *h, int *added);
uint64_t *hset_get(const hset *s, const flow_hash *h);
void hset_del(hset *s, const flow_hash *h);     /* no-op when absent */

/* ---- manifest.c --------------------------------------------------------- */
#define MANIFEST_MAGIC 0x52414C46u      /* "FLAR" */
#define MANIFEST_VERSION 1u

typedef struct manifest {
    store_artifact *art;
    chunk_ref **chunks;     /* per part, when asked for (pointers into chunk_pool) */
    uint32_t *nchunks;
    chunk_ref *chunk_pool;  /* every part's chunk list, one allocation */
} manifest;

typedef struct manifest_part {
    const char *name;
    int kind;
    uint64_t size, stored;
    flow_hash content;
    const chunk_ref *chunks;
    uint32_t nchunks;
} manifest_part;

/* parts must be sorted by name (strcmp). */
void manifest_encode(flow_buf *out, const flow_hash *key, const flow_hash *content,
                     int64_t created, const manifest_part *parts, int nparts,
                     const char *meta_json);
/* want_chunks: 1 = the chunk lists too; MANIFEST_SUMMARY = no parts at
 * all (nparts 0, part_count set: the header and metadata, for callers
 * that need no part, such as a null build on a 500k-part artifact). */
#define MANIFEST_SUMMARY 2
int manifest_parse(const void *p, size_t n, const flow_hash *key, manifest *m,
                   int want_chunks, flow_err *err);
void manifest_release(manifest *m);         /* frees chunks and art */
/* Part content hash: XXH3-128 over u64le(size) then each chunk's 16-byte
 * hash, in order. */
flow_hash part_content_hash(uint64_t size, const chunk_ref *chunks, uint32_t n);
/* Artifact content hash: XXH3-128 over, for each part in name order,
 * u32le(name length), name bytes, the part's 16-byte content hash. */
flow_hash artifact_content_hash(const manifest_part *parts, int nparts);
int part_name_cmp(const void *a, const void *b);   /* for manifest_part */

/* Decodes a value of the logs table into a malloc'd NUL-terminated log. */
int store_log_decode(const void *val, size_t vlen, char **log, size_t *len);
/* Reads and parses the manifest of key (want_chunks: also chunk lists). */
int store_load_manifest(flow_store *s, const flow_hash *key, manifest *m, int want_chunks,
                        flow_err *err);

/* Appends the checkpoint record of a len-byte checkpoint stored as
 * chunks[0..n) to rec (checkpoint_record.c). */
void checkpoint_encode(flow_buf *rec, uint64_t len, const chunk_ref *chunks, uint32_t n);
/* Decodes a checkpoint record (checkpoint_record.c); 0 or FLOW_E_CORRUPT. */
int checkpoint_decode(const void *val, size_t vlen, uint64_t *size, chunk_ref **chunks,
                      uint32_t *n);
/* In write txn: deletes the chunks of checkpoint record `old` (of node
 * key, already replaced or deleted) that are not in keep[], not referenced
 * by any artifact or other checkpoint, not refreshed since it was made,
 * and not nearly free to keep.  Raw LMDB code or 0. */
int checkpoint_release(flow_store *s, MDB_txn *txn, const flow_hash *key, const MDB_val *old,
                       const chunk_ref *keep, uint32_t nkeep);
/* In write txn: deletes key's checkpoint record and releases its chunks. */
int checkpoint_drop_in(flow_store *s, MDB_txn *txn, const flow_hash *key);

/* Decodes chunks[0..n) into buf (their lengths summed) on the pool;
 * what names the owner in errors ("artifact K part 'p'"). */
int store_read_chunks(flow_store *s, const chunk_ref *chunks, uint32_t n, char *buf,
                      const char *what, flow_err *err);

/* Used by checkpoint.c: chunks a blob into the store without publishing
 * anything; fills the chunk list (caller frees *chunks). */
int store_put_chunks(flow_store *s, const void *data, size_t len, chunk_ref **chunks,
                     uint32_t *nchunks, flow_err *err);

/* Adds the keys of every live build's roots record to roots, notes the
 * builds in st (nbuilds, builds[]) and deletes the roots records and
 * leases of dead processes (st->stale_records), in write txn (records.c). */
int store_live_roots(flow_store *s, MDB_txn *txn, hset *roots, store_gc_stats *st);

#endif
