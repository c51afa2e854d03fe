/* test.h — the tiny harness every tests/<module>_test.c uses.
 * CHECK records a failure and continues; the test's main returns
 * test_summary(), which is non-zero when anything failed. */
#ifndef FLOW_TEST_H
#define FLOW_TEST_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/wait.h>

static int test_failures, test_checks;

#define CHECK(cond) do { test_checks++; if (!(cond)) { test_failures++; \
    fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); } } while (0)
#define CHECK_MSG(cond, ...) do { test_checks++; if (!(cond)) { test_failures++; \
    fprintf(stderr, "%s:%d: CHECK failed: %s: ", __FILE__, __LINE__, #cond); \
    fprintf(stderr, __VA_ARGS__); fputc('\n', stderr); } } while (0)
#define CHECK_OK(expr, err) do { int rc_ = (expr); test_checks++; if (rc_ != 0) { test_failures++; \
    fprintf(stderr, "%s:%d: %s returned %d: %s\n", __FILE__, __LINE__, #expr, rc_, (err).msg); } } while (0)
#define CHECK_STREQ(a, b) do { const char *a_ = (a), *b_ = (b); test_checks++; \
    if (!a_ || !b_ || strcmp(a_, b_) != 0) { test_failures++; \
    fprintf(stderr, "%s:%d: expected \"%s\", got \"%s\"\n", __FILE__, __LINE__, b_ ? b_ : "(null)", a_ ? a_ : "(null)"); } } while (0)
#define CHECK_CONTAINS(hay, needle) do { const char *h_ = (hay), *n_ = (needle); test_checks++; \
    if (!h_ || !strstr(h_, n_)) { test_failures++; \
    fprintf(stderr, "%s:%d: \"%s\" does not contain \"%s\"\n", __FILE__, __LINE__, h_ ? h_ : "(null)", n_); } } while (0)

/* A fresh temporary folder under $TMPDIR (or /tmp); caller frees the path. */
static inline char *test_tmpdir(const char *tag)
{
    const char *base = getenv("TMPDIR");
    char *p = malloc(4096);
    snprintf(p, 4096, "%s/flow-%s-XXXXXX", base ? base : "/tmp", tag);
    if (!mkdtemp(p)) { perror("mkdtemp"); exit(2); }
    return p;
}

/* Waits for the n forked children pid[0..n); returns how many did not exit
 * with status 0 (a crash or a signal counts as a failure). */
static inline int test_wait_children(const pid_t *pid, int n)
{
    int bad = 0;
    for (int q = 0; q < n; q++) {
        int st;
        if (waitpid(pid[q], &st, 0) != pid[q]) { bad++; continue; }
        bad += !(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    }
    return bad;
}

static inline int test_summary(const char *name)
{
    if (test_failures) {
        fprintf(stderr, "%s: %d of %d checks failed\n", name, test_failures, test_checks);
        return 1;
    }
    printf("%s: all %d checks passed\n", name, test_checks);
    return 0;
}

#endif
