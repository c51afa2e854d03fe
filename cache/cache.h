/* cache.h — the one public header of the artifact store (LMDB + zstd).
 *
 * One LMDB environment per cache directory.  An artifact is the output of one
 * node run, stored under the node's key (flow_hash): a list of named parts
 * plus metadata (JSON text) and the stage's log.  Parts are split into
 * 1-4 MiB chunks, content-addressed by XXH3-128 of their raw bytes (stored
 * once across all artifacts), zstd-compressed outside the write transaction
 * (float parts byte-shuffled first when that is smaller) and verified on
 * every read.  An artifact becomes visible in one write transaction, after
 * all its chunks are stored; chunks without a committed artifact are
 * garbage that `gc` removes.
 *
 * Processes: a flow_store must only be used in the process that opened it
 * (LMDB forbids using an environment across fork); forked workers open
 * their own.  Several processes may open the same cache at once.  A forked
 * child must not use the parent's flow_store; it may store_close() it
 * (that only releases memory) but should do so before opening its own, or
 * simply leave it alone.  Within a process, use a flow_store from one
 * thread at a time (the store runs its own 2 helper threads internally).
 *
 * Layout (format version 1, in the meta record with magic "FLOWSTOR" and
 * the hash algorithm name "xxh3-128"): tables chunks, artifacts, logs,
 * history, statcache, leases, checkpoints.  Chunks are 2 MiB of raw bytes
 * (the last one of a part shorter), keyed by XXH3-128 of those bytes, and
 * stored as zstd level 3, as shuffled byte planes (FLOW_PART_F32, when
 * smaller than plain zstd on the part's first chunk: planes that look like
 * noise stay raw, the rest zstd level 1, which on float exponent planes is
 * both smaller and >2x faster than level 3; see store_internal.h), or raw
 * when compression does not help.
 *
 * Hashes:
 *   part content     = XXH3-128( u64le(size) || chunk_hash[0] || ... )
 *                      (so it depends on the fixed 2 MiB chunking);
 *   artifact content = XXH3-128( for each part in strcmp name order:
 *                      u32le(strlen(name)) || name || part content ).
 *
 * Map growth: the LMDB map starts at initial_map_size and doubles on
 * demand (also adopting a size grown by another process).  Only a real
 * disk-full or the max_map_size limit gives FLOW_E_FULL, and the failed
 * write leaves the store as it was.
 *
 * All functions return 0 or a negative FLOW_E* code with err filled.
 */
#ifndef FLOW_CACHE_H
#define FLOW_CACHE_H

#include "engine/base/base.h"

typedef struct flow_store flow_store;

typedef struct store_options {
    size_t initial_map_size;  /* 0 = default (1 GiB); grows automatically */
    int readonly;
    /* Durability of commits (STORE_SYNC_*; 0 = FULL).  Whatever the mode,
     * a process killed at any moment (kill -9, crash) never corrupts the
     * store: LMDB's copy-on-write commit is atomic.  The modes differ only
     * on an operating-system crash or power loss:
     *   FULL    every artifact commit is fsynced (data, then meta page);
     *           a committed artifact survives power loss.
     *   NOMETA  one fsync per commit (meta page not flushed): a power loss
     *           may undo the last commit(s) but does not corrupt.
     *   NONE    no fsync until store_sync()/store_close(): a power loss may
     *           lose recent commits and, on file systems that reorder
     *           writes, corrupt the store (it is a cache: delete and
     *           rebuild).  For builds that make many small commits; call
     *           store_sync() at the end.
     * In FULL mode, chunk batches, history, stat-cache and lease records
     * are committed like NOMETA (one fsync, never a corruption risk); the
     * next artifact commit makes them durable. */
    int sync_mode;
    size_t max_map_size;      /* 0 = unlimited; map growth beyond it -> FLOW_E_FULL */
} store_options;
enum { STORE_SYNC_FULL = 0, STORE_SYNC_NOMETA = 1, STORE_SYNC_NONE = 2 };

/* Opens (creating if needed) the cache at dir.  Validates the store's
 * format version; refuses too old / too new with a clear message. */
int store_open(flow_store **out, const char *dir, const store_options *opt, flow_err *err);
/* Free every writer and reader of s before closing it. */
void store_close(flow_store *s);
const char *store_dir(const flow_store *s);
/* Flushes everything committed so far to disk (for STORE_SYNC_NONE/NOMETA):
 * this handle's commits and those of other processes on the same data
 * file since its last sync; nothing (no fdatasync) when no transaction was
 * committed since then or since the open. */
int store_sync(flow_store *s, flow_err *err);
/* How many times store_sync flushed the data file through this handle
 * (tests: a null build issues none). */
int store_sync_count(const flow_store *s);
/* Changes the sync mode of this process's handle (STORE_SYNC_*). */
int store_set_sync_mode(flow_store *s, int mode, flow_err *err);

/* Whole-store figures for `flow ls` / `flow gc`. */
typedef struct store_stats {
    uint64_t artifacts, chunks;
    uint64_t chunk_bytes;       /* stored (compressed) bytes of all chunks */
    uint64_t chunk_raw_bytes;   /* raw bytes of all distinct chunks */
    uint64_t checkpoints, leases, logs;
    uint64_t map_size;          /* current LMDB map size */
    uint64_t file_size;         /* bytes used by data.mdb */
} store_stats;
int store_stats_get(flow_store *s, store_stats *st, flow_err *err);
/* Build leases held now (live or stale): O(1), where store_stats_get
 * walks every chunk. */
int store_leases_count(flow_store *s, uint64_t *n, flow_err *err);

/* ---- writing an artifact ------------------------------------------- */
typedef struct store_writer store_writer;
int store_writer_new(flow_store *s, store_writer **out, flow_err *err);
/* Parts are written one at a time; names must be unique per artifact. */
int store_part_begin(store_writer *w, const char *name, int kind /* FLOW_PART_* */, flow_err *err);
int store_part_write(store_writer *w, const void *data, size_t len, flow_err *err);
int store_part_end(store_writer *w, flow_err *err);
/* Or several at once (a stage streaming text and units side by side): open
 * gives the part's index for append/patch/close; at most
 * STORE_MAX_OPEN_PARTS open at a time (begin/write/end count as one).
 * Memory: two 2 MiB buffers per open part plus the pipeline's, whatever
 * the part sizes.  patch overwrites bytes already appended within the
 * part's first chunk (offset + len <= min(size, 2 MiB)): a header whose
 * counts are known only at the end.  The commit closes parts left open. */
#define STORE_MAX_OPEN_PARTS 8
int store_part_open(store_writer *w, const char *name, int kind, int *part, flow_err *err);
int store_part_append(store_writer *w, int part, const void *data, size_t len, flow_err *err);
int store_part_patch(store_writer *w, int part, uint64_t offset, const void *data, size_t len,
                     flow_err *err);
int store_part_close(store_writer *w, int part, flow_err *err);
/* Publishes the artifact under key atomically (replacing an older one with
 * the same key).  meta_json: the metadata object; log: the stage's log. */
int store_writer_commit(store_writer *w, const flow_hash *key,
                        const char *meta_json, const char *log, size_t log_len,
                        flow_err *err);
void store_writer_free(store_writer *w);   /* aborts if not committed */

/* ---- reading -------------------------------------------------------- */
typedef struct store_part_info {
    const char *name;
    int kind;
    uint64_t size;          /* raw bytes */
    uint64_t stored;        /* compressed bytes of its chunks (each chunk
                             * counted per use: dedup is not subtracted) */
    flow_hash content;      /* hash of the part's raw bytes (chunk-list hash) */
} store_part_info;

typedef struct store_artifact {
    flow_hash key;
    flow_hash content;      /* hash over (name, content) of all parts */
    int nparts;
    store_part_info *parts; /* sorted by name (strcmp), names unique */
    int part_count;         /* parts in the manifest (nparts, or 0 in a summary) */
    char *meta_json;        /* metadata object */
    char *name_pool;        /* internal: the part names live here */
    int64_t created;        /* unix seconds */
    uint64_t raw_size, stored_size;   /* sums over the parts */
} store_artifact;

/* Looks up an artifact by key; FLOW_E_NOTFOUND if absent.  *out is owned by
 * the caller (store_artifact_free). */
int store_get(flow_store *s, const flow_hash *key, store_artifact **out, flow_err *err);
/* The same without the parts (nparts 0, parts NULL; part_count says how
 * many there are): key, content, sizes, date and metadata, at a cost that
 * does not grow with the parts beyond one pass over the manifest. */
int store_get_summary(flow_store *s, const flow_hash *key, store_artifact **out, flow_err *err);
void store_artifact_free(store_artifact *a);
int store_has(flow_store *s, const flow_hash *key);
/* Resolves a hex prefix of 6..32 digits to a unique key: FLOW_E_USAGE for
 * a bad prefix, FLOW_E_NOTFOUND, or FLOW_E_AMBIGUOUS listing candidates. */
int store_resolve(flow_store *s, const char *hex_prefix, flow_hash *out, flow_err *err);
int store_get_log(flow_store *s, const flow_hash *key, char **log, size_t *len, flow_err *err);

/* Streams a part's bytes, verifying each chunk's hash (the next chunk is
 * decoded in the background while the caller consumes the current one).
 * store_reader_read returns the bytes read (0 at the end) or a negative
 * code; FLOW_E_CORRUPT names the artifact, part, chunk index and hash.
 * store_read_part reads a whole part into a malloc'd buffer (one extra NUL
 * byte after *len), decoding chunks in parallel straight into it. */
typedef struct store_reader store_reader;
int store_reader_open(flow_store *s, const flow_hash *key, const char *part,
                      store_reader **out, flow_err *err);
long long store_reader_read(store_reader *r, void *buf, size_t cap, flow_err *err);
void store_reader_free(store_reader *r);
int store_read_part(flow_store *s, const flow_hash *key, const char *part,
                    char **data, size_t *len, flow_err *err);

/* Index of the part called name in a->parts (binary search: parts are
 * sorted by name), or -1. */
int store_part_find(const store_artifact *a, const char *name);

/* ---- reading many parts of one artifact ------------------------------ */
/* A handle on one artifact: its manifest read and parsed once, with every
 * part's chunk list, so that reading all P parts costs O(P) and not the
 * O(P^2) of P store_read_part calls (each of which parses the whole
 * manifest).  The engine opens one per input of a node.  Parts are
 * addressed by index into store_handle_artifact(h)->parts (store_part_find
 * gives the index of a name).  The handle holds no transaction: a part
 * whose chunks were deleted meanwhile (a gc of an artifact that is no
 * longer reachable) reads as FLOW_E_NOTFOUND naming the chunk. */
typedef struct store_handle store_handle;
int store_handle_open(flow_store *s, const flow_hash *key, store_handle **out, flow_err *err);
/* The artifact (owned by the handle, valid until store_handle_free). */
const store_artifact *store_handle_artifact(const store_handle *h);
/* Like store_read_part / store_reader_open, for part index `part`. */
int store_handle_read(store_handle *h, int part, char **data, size_t *len, flow_err *err);
int store_handle_reader(store_handle *h, int part, store_reader **out, flow_err *err);
void store_handle_free(store_handle *h);

/* Iterates all artifacts (for ls / gc); cb returns non-zero to stop. */
int store_foreach(flow_store *s, int (*cb)(const store_artifact *a, void *arg),
                  void *arg, flow_err *err);

/* ---- node history: the most recent builds of a named node ----------- */
/* graph_id identifies a graph file (e.g. hash of its absolute path). */
int store_record_build(flow_store *s, const char *graph_id, const char *node,
                       const flow_hash *key, flow_err *err);
/* The most recent n keys built for the node, newest first. */
int store_last_builds(flow_store *s, const char *graph_id, const char *node,
                      flow_hash *keys, int max, int *n, flow_err *err);
/* The same with the time each key was recorded (unix milliseconds; t_ms
 * may be NULL). */
int store_node_history(flow_store *s, const char *graph_id, const char *node,
                       flow_hash *keys, int64_t *t_ms, int max, int *n, flow_err *err);
/* Build marks, so that readers can tell which history entries the most
 * recent build of a graph wrote (`flow metrics diff GRAPH`): a build passes
 * the same int (0 at its start) to every call; the first call that really
 * writes an entry (the node's newest key changes) records, in the same
 * transaction and just before it, an entry of a unique key under the
 * pseudo-node STORE_BUILD_MARK (no graph node can have that name) and sets
 * *marked.  A null build writes nothing.  Entries at or after the newest
 * mark's time were written by the most recent build that changed anything. */
#define STORE_BUILD_MARK "\x01build"
int store_record_build_marked(flow_store *s, const char *graph_id, const char *node,
                              const flow_hash *key, int *marked, flow_err *err);

/* ---- stat cache: path -> (size, mtime_ns, inode, content hash) ------ */
/* Puts are buffered in the flow_store (get sees them at once) and written
 * 512 at a time, by store_sync and by store_close: one commit instead of
 * one per file.  Entries of a killed process are lost (a rehash). */
int store_stat_get(flow_store *s, const char *path, uint64_t size, int64_t mtime_ns,
                   uint64_t inode, flow_hash *out);     /* 0 hit, FLOW_E_NOTFOUND miss */
int store_stat_put(flow_store *s, const char *path, uint64_t size, int64_t mtime_ns,
                   uint64_t inode, const flow_hash *h, flow_err *err);
/* The same lookups as store_stat_get, many of them in one read
 * transaction (a null build of 500k files paid one per file): open one
 * reader per thread, read, close it before any store_stat_put.  A reader
 * that could not begin its transaction still answers (each lookup then
 * tries its own). */
typedef struct store_stat_reader store_stat_reader;
store_stat_reader *store_stat_reader_open(flow_store *s);
int store_stat_read(store_stat_reader *r, const char *path, uint64_t size, int64_t mtime_ns,
                    uint64_t inode, flow_hash *out);    /* 0 hit, FLOW_E_NOTFOUND miss */
void store_stat_reader_close(store_stat_reader *r);

/* ---- small keyed records: leases and checkpoints -------------------- */
/* Atomically takes the lease on key for this process (pid, host, start
 * time) unless a live owner holds it: returns 0 when taken, FLOW_E_BUSY when
 * another live process holds it.  A lease whose owner died (same host,
 * process gone, or its pid reused: /proc/<pid>/stat start time differs) or
 * that expired (ttl_s without renewal) is taken over.  ttl_s <= 0: no
 * expiry.  Taking a lease this process already holds renews it.  renew:
 * extends ours (takes it if free); release: deletes it if it is ours,
 * otherwise does nothing. */
int store_lease_take(flow_store *s, const flow_hash *key, int ttl_s, flow_err *err);
int store_lease_renew(flow_store *s, const flow_hash *key, int ttl_s, flow_err *err);
int store_lease_release(flow_store *s, const flow_hash *key, flow_err *err);
/* Checkpoints are stored as chunks (shared with artifacts, reachable for
 * gc) plus a chunk list keyed by the node key; put replaces the previous
 * one and committing an artifact under the same key drops it, and both
 * delete the chunks of the checkpoint they replace that nothing else uses,
 * so a node never has more than two checkpoints' chunks stored (the one
 * being written and the last complete one).  A chunk that compresses to
 * under 1/64 of its size is left to gc: it costs nothing, and its bytes
 * (zeros) are the kind another writer may be reusing right now. */
int store_checkpoint_put(flow_store *s, const flow_hash *key, const void *data,
                         size_t len, flow_err *err);
int store_checkpoint_get(flow_store *s, const flow_hash *key, char **data,
                         size_t *len, flow_err *err);
int store_checkpoint_drop(flow_store *s, const flow_hash *key, flow_err *err);

/* ---- temporary roots: what a running build uses ----------------------- */
/* Replaces this process's roots record with keys[0..n): the artifacts a
 * build in progress makes or reads (nodes running or ready, and the inputs
 * of every node not finished yet).  Every gc keeps them while the record's
 * owner lives: on this host while the process exists (with its start
 * time), from another host until ttl_s passes without a new put.  The
 * record is a lease of the process (leases table, same owner check) that
 * carries the key list; gc ignores and deletes the records of dead
 * processes.  drop deletes ours (the end of a build). */
int store_roots_put(flow_store *s, const flow_hash *keys, size_t n, int ttl_s, flow_err *err);
int store_roots_drop(flow_store *s, flow_err *err);

/* ---- maintenance ---------------------------------------------------- */
#define STORE_GC_MAX_BUILDS 8
typedef struct store_gc_build {
    int pid;
    char host[64];
    uint64_t artifacts;         /* stored artifacts in its live set */
} store_gc_build;
typedef struct store_gc_stats {
    uint64_t artifacts_removed, chunks_removed, bytes_freed;
    uint64_t artifacts_recent;  /* kept: committed after the candidates were listed */
    uint64_t stale_records;     /* roots records and leases of dead processes deleted */
    int nbuilds;                /* live builds whose roots were kept (first
                                 * STORE_GC_MAX_BUILDS in builds[]) */
    store_gc_build builds[STORE_GC_MAX_BUILDS];
} store_gc_stats;
/* The keys of every artifact stored now (*keys: caller frees).  A gc lists
 * them before it computes its roots from the graphs and passes them to
 * store_gc as candidates, so an artifact committed meanwhile (whose key
 * the roots could not know yet) is never deleted. */
int store_list_artifacts(flow_store *s, flow_hash **keys, size_t *n, flow_err *err);
/* Deletes every artifact (and its log) among candidates[0..ncand) (NULL:
 * all) whose key is neither in keep[] nor in a live build's roots, then
 * chunks referenced by no artifact and no checkpoint, and the roots records
 * and leases of dead processes.  Kept anyway: chunks younger than grace_s,
 * and chunks written since the oldest live lease was taken (minus a
 * minute): a build in progress, however long, holds a lease while it
 * writes chunks that nothing references yet.  A writer reusing an older
 * stored chunk refreshes its time.  One write transaction, so no commit
 * slips between reading the roots and deleting.  bytes_freed counts stored
 * values removed (LMDB reuses the pages; store_compact gives them back). */
int store_gc(flow_store *s, const flow_hash *keep, size_t nkeep, const flow_hash *candidates,
             size_t ncand, int grace_s, store_gc_stats *st, flow_err *err);

/* Gives free pages back to the filesystem (cache/compact.c): copies the
 * live pages of the cache at dir into a new file (mdb_env_copyfd2 with
 * MDB_CP_COMPACT), syncs it and renames it over data.mdb.  Every handle
 * holds a shared lock on the cache's `open.lock` from before it opens LMDB
 * until after it closes it; compaction runs only when it gets that lock
 * exclusively with no wait and no process has LMDB's lock file open (no
 * handle open anywhere, the caller's included: a running build or reader
 * is never disturbed; new openers wait the seconds the copy takes), and
 * only when at least min_free_pct percent of the file is free pages.  A
 * kill at any moment leaves either the old file or the complete new one (a
 * leftover `data.mdb.compact` is removed by the next compaction).
 * compacted = 0 with why filled when it did not run. */
typedef struct store_compact_stats {
    uint64_t file_before, file_after;  /* bytes of data.mdb */
    uint64_t free_bytes;               /* free pages found before */
    int compacted;
    char why[200];
} store_compact_stats;
int store_compact(const char *dir, int min_free_pct, store_compact_stats *st, flow_err *err);
/* Free pages (bytes LMDB will reuse) and the size of data.mdb, cheaply
 * (reads the freelist only): whether a compaction is worth it. */
int store_free_space(flow_store *s, uint64_t *free_bytes, uint64_t *file_bytes, flow_err *err);
/* Re-reads every chunk of every artifact and checkpoint, and rechecks the
 * part and artifact content hashes; reports each damaged item through
 * report() (e.g. "artifact <key> part 'p' chunk 3 (<hash>): content hash
 * mismatch"); returns 0 if all good, FLOW_E_CORRUPT otherwise. */
int store_verify(flow_store *s, void (*report)(const char *what, void *arg),
                 void *arg, flow_err *err);

/* Repairs damage that verify finds (cache/repair.c): checks every stored
 * chunk and every artifact's content hashes, then in one write transaction
 * deletes every artifact (with its log) and checkpoint that is damaged or
 * references a damaged or missing chunk, and the damaged chunks.  report()
 * gets one line per damaged chunk found and per item removed.  The next
 * build rebuilds exactly the removed nodes. */
typedef struct store_repair_stats {
    uint64_t artifacts_removed, checkpoints_removed, chunks_removed;
} store_repair_stats;
typedef void (*store_repair_report)(const char *what, void *arg);
int store_repair(flow_store *s, store_repair_report report, void *arg, store_repair_stats *st,
                 flow_err *err);

#endif
