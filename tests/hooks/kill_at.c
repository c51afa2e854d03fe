/* kill_at.c — the FLOW_TEST_KILL_AT test hook, linked only into the
 * flow_testhooks binary (CMakeLists.txt), never into `flow`.
 *
 * The training stages call flow_test_step_hook(stage, step) after each
 * optimizer step when the program defines it (a weak reference in
 * stages/trainer.c; in `flow` it is NULL).  Here, with
 * FLOW_TEST_KILL_AT="STAGE:STEP" in the environment, the build is killed as
 * by `kill -9` after optimizer step STEP of a STAGE node: SIGKILL to the
 * scheduler (the worker's parent), then to the worker itself.  Used by
 * tests/train_e2e_test.sh to check that a killed build resumes from its
 * checkpoint to the same bytes. */
#include "stages/model/trainer.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void flow_test_step_hook(const char *stage, long step)
{
    const char *v = getenv("FLOW_TEST_KILL_AT");
    if (!v) return;
    size_t n = strlen(stage);
    if (strncmp(v, stage, n) != 0 || v[n] != ':' || atol(v + n + 1) != step) return;
    kill(getppid(), SIGKILL);
    raise(SIGKILL);
}
