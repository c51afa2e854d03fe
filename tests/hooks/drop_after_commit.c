/* drop_after_commit.c — the FLOW_TEST_DROP_AFTER_COMMIT test hook, linked
 * only into the flow_testhooks binary (CMakeLists.txt), never into `flow`.
 *
 * With FLOW_TEST_DROP_AFTER_COMMIT=NODE in the environment, the worker of
 * node NODE deletes the artifact it has just committed (record and log,
 * one write transaction), as a foreign process ignoring the build's live
 * set could.  Used by tests/gc_live_test.sh: the scheduler must report
 * the missing artifact as what it is, not kill the worker and blame
 * memory. */
#include "cache/store_internal.h"
#include "engine/internal.h"

#include <stdlib.h>
#include <string.h>

static int drop_fn(flow_store *s, MDB_txn *txn, void *arg, flow_err *err)
{
    (void)err;
    MDB_val k = { 16, arg };
    int rc = mdb_del(txn, s->dbi[DB_ARTIFACTS], &k, NULL);
    if (rc == 0) rc = mdb_del(txn, s->dbi[DB_LOGS], &k, NULL);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

void flow_test_commit_hook(flow_store *s, const flow_hash *key, const char *node)
{
    const char *v = getenv("FLOW_TEST_DROP_AFTER_COMMIT");
    if (!v || strcmp(v, node) != 0) return;
    flow_err err;
    store_write(s, "test hook: deleting a committed artifact", drop_fn, (void *)key->b, 0, &err);
}
