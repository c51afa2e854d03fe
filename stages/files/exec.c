/* exec.c — the `exec` stage: runs a shell command as a node.
 *
 *   stats = exec {
 *       in = [corpus, tok.vocab]
 *       command = "wc -l {in.corpus}/text > counts.txt"
 *       outputs = ["counts.txt"]
 *   }
 *
 * The worker makes private temporary folders under $TMPDIR:
 *   in/NAME/...  (flow-in-PID-XXXXXX, only when there are inputs) every input
 *                binding materialised as files (part "a/b" of the input
 *                becomes file in/NAME/a/b; a binding that sees a single
 *                part named exactly like its output is the file in/NAME
 *                itself).  NAME is the reference as written: the node's
 *                name, or NODE.OUTPUT for a `node.output` reference.
 *   work/        (flow-exec-PID-XXXXXX) the command's working folder; the
 *                declared `outputs` (files or folders, relative to it)
 *                become the node's parts.
 * The command sees placeholders {in.NAME}, {in}, {out}, {script},
 * {threads} (replaced by shell-quoted values) and the environment
 * FLOW_IN_NAME (non-alphanumerics of NAME as '_'), FLOW_IN, FLOW_OUT,
 * FLOW_SCRIPT, FLOW_THREADS, OMP_NUM_THREADS, FLOW_GPUS (and
 * CUDA_VISIBLE_DEVICES when GPUs were granted).  Its stdout and stderr go
 * to the node log (the last line is the live status); a non-zero exit
 * fails the node.  `script`'s content is part of the key (key_extra), so
 * editing the script rebuilds the node.  The key holds the inputs' keys in
 * binding order, not the names they are bound under (keys never hold node
 * names, so a renamed node keeps its cache; concurrent_test relies on it):
 * a command whose output depends on the folder names under {in} writes
 * bytes its key does not determine, which the README warns against.
 * Folders left behind by a worker that was killed are removed by the next
 * exec node's worker.
 */
#include "stages/stages.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static const flow_param_def params[] = {
    { .name = "command", .type = FLOW_P_STRING, .def = "\"\"", .min = 1, .max = 0,
      .help = "shell command, run in the output folder; {in.NAME}, {in}, {out}, {script}, "
              "{threads} are replaced by (quoted) paths and values" },
    { .name = "script", .type = FLOW_P_STRING, .def = "\"\"", .min = 1, .max = 0,
      .help = "script file (relative to the graph's folder); its content is part of the key; "
              "run as `shell script` when command is empty" },
    { .name = "outputs", .type = FLOW_P_LIST, .elem = FLOW_P_STRING, .def = "[]", .min = 1,
      .max = 0, .help = "files or folders (relative to the working folder) stored as parts" },
    { .name = "shell", .type = FLOW_P_STRING, .def = "\"/bin/sh\"", .min = 1, .max = 0,
      .help = "the shell that runs the command (`shell -c command`)" },
};

static const flow_input_def inputs[] = {
    { .name = "in", .optional = 1, .many = 1, .help = "nodes (or node.output) given as files" },
};

/* ---- small helpers ------------------------------------------------------ */

static char *join(const char *a, const char *b)
{
    size_t na = strlen(a), nb = strlen(b);
    char *p = xmalloc(na + nb + 2);
    memcpy(p, a, na);
    p[na] = '/';
    memcpy(p + na + 1, b, nb + 1);
    return p;
}

static int mkdirs(const char *path)
{
    char *p = xstrdup(path);
    for (char *s = p + 1; *s; s++)
        if (*s == '/') {
            *s = 0;
            if (mkdir(p, 0700) != 0 && errno != EEXIST) { free(p); return -1; }
            *s = '/';
        }
    int rc = mkdir(p, 0700) != 0 && errno != EEXIST ? -1 : 0;
    free(p);
    return rc;
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *f)
{
    (void)st; (void)flag; (void)f;
    remove(path);
    return 0;
}

static void rm_rf(const char *path) { nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS); }

static void shell_quote(flow_buf *b, const char *s)
{
    buf_addc(b, '\'');
    for (; *s; s++) {
        if (*s == '\'') buf_adds(b, "'\\''");
        else buf_addc(b, *s);
    }
    buf_addc(b, '\'');
}

static char *script_path(flow_ctx *c)
{
    const char *s = flow_param_str(c, "script");
    if (!*s) return NULL;
    return s[0] == '/' ? xstrdup(s) : join(flow_graph_dir(c), s);
}

/* ---- inputs -------------------------------------------------------------- */

typedef struct binding {
    char *name;             /* NAME in {in.NAME} */
    char *path;             /* materialised file or folder */
} binding;

/* NAME of binding i: the reference as written (node or node.output). */
static char *binding_name(flow_ctx *c, int i) { return xstrdup(flow_in_name(c, "in", i)); }

/* Materialises visible part k of binding i as the file path; buf: 1 MiB. */
static int write_file(flow_ctx *c, int i, int k, const char *path, char *buf)
{
    char *dir = xstrdup(path);
    char *slash = strrchr(dir, '/');
    if (slash) *slash = 0;
    if (mkdirs(dir) != 0) {
        int rc = flow_ctx_fail(c, FLOW_E_IO, "cannot create folder '%s': %s", dir, strerror(errno));
        free(dir);
        return rc;
    }
    free(dir);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return flow_ctx_fail(c, FLOW_E_IO, "cannot create input file '%s': %s", path,
                             strerror(errno));
    flow_in_stream *in;
    int rc = flow_in_open_at(c, "in", i, k, &in);
    if (rc) { close(fd); return rc; }
    long long n;
    while ((n = flow_in_stream_read(in, buf, 1 << 20)) > 0) {
        const char *p = buf;
        while (n > 0) {
            ssize_t w = write(fd, p, (size_t)n);
            if (w < 0 && errno == EINTR) continue;
            if (w < 0) {
                rc = flow_ctx_fail(c, errno == ENOSPC ? FLOW_E_FULL : FLOW_E_IO,
                                   "cannot write input file '%s': %s", path, strerror(errno));
                break;
            }
            p += w;
            n -= w;
        }
        if (rc) break;
    }
    if (n < 0 && !rc) rc = (int)n;
    flow_in_stream_close(in);
    if (close(fd) != 0 && !rc)
        rc = flow_ctx_fail(c, FLOW_E_IO, "cannot write input file '%s': %s", path, strerror(errno));
    return rc;
}

/* Binding i: its one file, or a folder with a file per visible part. */
static int materialise_one(flow_ctx *c, binding *bd, int i, char *buf)
{
    int np = flow_in_nparts(c, "in", i);
    if (np == 1 && flow_in_part_name(c, "in", i, 0)[0] == 0) return write_file(c, i, 0, bd[i].path, buf);
    if (mkdirs(bd[i].path) != 0)
        return flow_ctx_fail(c, FLOW_E_IO, "cannot create folder '%s': %s", bd[i].path,
                             strerror(errno));
    for (int k = 0; k < np; k++) {
        const char *part = flow_in_part_name(c, "in", i, k);
        if (!part[0]) continue;     /* "" beside other parts: no file name for it */
        char *path = join(bd[i].path, part);
        int rc = write_file(c, i, k, path, buf);
        free(path);
        if (rc) return rc;
    }
    return 0;
}

/* Every part of every binding, in one pass over each binding's parts. */
static int materialise(flow_ctx *c, const char *indir, binding *bd, int nb)
{
    char *buf = xmalloc(1 << 20);
    int rc = 0;
    for (int i = 0; i < nb && !rc; i++) {
        bd[i].name = binding_name(c, i);
        /* a second binding of the same name gets NAME_2, NAME_3, ... */
        char *dirname = xstrdup(bd[i].name);
        for (int dup = 2;; dup++) {
            int clash = 0;
            for (int j = 0; j < i; j++) clash |= strcmp(bd[j].name, bd[i].name) == 0;
            if (!clash) break;
            flow_buf b;
            buf_init(&b);
            buf_printf(&b, "%s_%d", dirname, dup);
            free(bd[i].name);
            bd[i].name = buf_detach(&b, NULL);
        }
        free(dirname);
        dirname = xstrdup(bd[i].name);
        bd[i].path = join(indir, dirname);
        free(dirname);
        rc = materialise_one(c, bd, i, buf);
    }
    free(buf);
    return rc;
}

/* ---- the command --------------------------------------------------------- */

static int expand(flow_ctx *c, const char *cmd, const binding *bd, int nb, const char *indir,
                  const char *work, const char *script, flow_buf *out)
{
    for (const char *p = cmd; *p;) {
        if (*p != '{') { buf_addc(out, *p++); continue; }
        const char *close = strchr(p, '}');
        if (!close) { buf_adds(out, p); break; }
        size_t k = (size_t)(close - p - 1);
        const char *in = p + 1;
        if (k == 2 && strncmp(in, "in", 2) == 0) shell_quote(out, indir);
        else if (k == 3 && strncmp(in, "out", 3) == 0) shell_quote(out, work);
        else if (k == 7 && strncmp(in, "threads", 7) == 0) buf_printf(out, "%d", flow_threads(c));
        else if (k == 6 && strncmp(in, "script", 6) == 0) {
            if (!script)
                return flow_ctx_fail(c, FLOW_E_PARAM, "command uses {script} but no script "
                                     "is set");
            shell_quote(out, script);
        } else if (k > 3 && strncmp(in, "in.", 3) == 0) {
            int found = -1;
            for (int i = 0; i < nb && found < 0; i++)
                if (strlen(bd[i].name) == k - 3 && strncmp(bd[i].name, in + 3, k - 3) == 0)
                    found = i;
            if (found < 0) {
                flow_buf names;
                buf_init(&names);
                for (int i = 0; i < nb; i++) buf_printf(&names, "%s{in.%s}", i ? ", " : "", bd[i].name);
                int rc = flow_ctx_fail(c, FLOW_E_PARAM, "command uses {%.*s} but 'in' has no "
                                       "binding of that name (available: %s)", (int)k, in,
                                       names.len ? names.data : "none");
                buf_release(&names);
                return rc;
            }
            shell_quote(out, bd[found].path);
        } else {
            /* not ours (awk '{print}', ${VAR}): keep as written */
            buf_add(out, p, (size_t)(close - p + 1));
        }
        p = close + 1;
    }
    return 0;
}

static void env_name(flow_buf *b, const char *name)
{
    buf_adds(b, "FLOW_IN_");
    for (const char *s = name; *s; s++) {
        char ch = *s;
        int ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9');
        buf_addc(b, ok ? ch : '_');
    }
}

extern char **environ;

/* environ with FLOW_IN_*, FLOW_IN, FLOW_OUT, FLOW_SCRIPT, FLOW_THREADS,
 * OMP_NUM_THREADS, FLOW_GPUS and CUDA_VISIBLE_DEVICES (re)set. */
static char **make_env(flow_ctx *c, const binding *bd, int nb, const char *indir,
                       const char *work, const char *script)
{
    int n = 0;
    while (environ[n]) n++;
    char **env = xcalloc((size_t)n + (size_t)nb + 16, sizeof *env);
    int k = 0;
    for (int i = 0; i < n; i++) {
        const char *e = environ[i];
        if (strncmp(e, "FLOW_IN", 7) == 0 || strncmp(e, "FLOW_OUT=", 9) == 0 ||
            strncmp(e, "FLOW_SCRIPT=", 12) == 0 || strncmp(e, "FLOW_THREADS=", 13) == 0 ||
            strncmp(e, "OMP_NUM_THREADS=", 16) == 0 || strncmp(e, "FLOW_GPUS=", 10) == 0 ||
            strncmp(e, "CUDA_VISIBLE_DEVICES=", 21) == 0)
            continue;
        env[k++] = xstrdup(e);
    }
    flow_buf b;
    buf_init(&b);
    for (int i = 0; i < nb; i++) {
        b.len = 0;
        env_name(&b, bd[i].name);
        buf_printf(&b, "=%s", bd[i].path);
        env[k++] = xstrdup(b.data);
    }
#define ADD(...) do { b.len = 0; buf_printf(&b, __VA_ARGS__); env[k++] = xstrdup(b.data); } while (0)
    ADD("FLOW_IN=%s", indir);
    ADD("FLOW_OUT=%s", work);
    if (script) ADD("FLOW_SCRIPT=%s", script);
    ADD("FLOW_THREADS=%d", flow_threads(c));
    ADD("OMP_NUM_THREADS=%d", flow_threads(c));
    b.len = 0;
    for (int i = 0; i < flow_gpu_count(c); i++) buf_printf(&b, "%s%d", i ? "," : "", flow_gpu_id(c, i));
    char *ids = xstrdup(b.len ? b.data : "");
    ADD("FLOW_GPUS=%s", ids);
    if (*ids) ADD("CUDA_VISIBLE_DEVICES=%s", ids);
#undef ADD
    free(ids);
    buf_release(&b);
    return env;
}

static void free_env(char **env)
{
    for (char **e = env; *e; e++) free(*e);
    free(env);
}

/* vfork + execve: the child only makes system calls (it shares our memory
 * until execve) and dies with the worker (PR_SET_PDEATHSIG). */
static pid_t __attribute__((noinline)) spawn(const char *shell, const char **argv, char **env,
                                             const char *work, int outfd)
{
    static const char cant[] = "cannot run the shell (exec failed)\n";
    pid_t parent = getpid();
    pid_t pid = vfork();
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent) _exit(127);
        if (chdir(work) != 0) _exit(127);
        int dn = open("/dev/null", O_RDONLY);
        if (dn >= 0) dup2(dn, 0);
        dup2(outfd, 1);
        dup2(outfd, 2);
        execve(shell, (char *const *)argv, env);
        if (write(2, cant, sizeof cant - 1) < 0) {}
        _exit(127);
    }
    return pid;
}

/* Runs the command; its output goes line by line into the node log. */
static int run_command(flow_ctx *c, const char *shell, const char *cmd, const char *script,
                       const char *work, const char *indir, const binding *bd, int nb)
{
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0)
        return flow_ctx_fail(c, FLOW_E_IO, "cannot create a pipe: %s", strerror(errno));
    /* environment and arguments are prepared here: the child of vfork()
     * may only make system calls (it shares our memory until execve), and
     * vfork does not copy the worker's page tables, which fork would */
    char **env = make_env(c, bd, nb, indir, work, script);
    const char *argv[4] = { shell, cmd[0] ? "-c" : script, cmd[0] ? cmd : NULL, NULL };
    pid_t pid = spawn(shell, argv, env, work, fds[1]);
    free_env(env);
    if (pid < 0) {
        close(fds[0]);
        close(fds[1]);
        return flow_ctx_fail(c, FLOW_E_IO, "cannot start a process: %s", strerror(errno));
    }
    close(fds[1]);
    /* split the output into lines for the log; keep the last as status */
    flow_buf line;
    buf_init(&line);
    char buf[8192];
    for (;;) {
        ssize_t n = read(fds[0], buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        for (ssize_t i = 0; i < n; i++) {
            if (buf[i] != '\n' && line.len < 65536) { buf_addc(&line, buf[i]); continue; }
            if (buf[i] != '\n') continue;   /* over-long line: the rest is dropped */
            flow_log(c, "%s", line.data ? line.data : "");
            flow_progress(c, -1, "%.200s", line.data ? line.data : "");
            line.len = 0;
            if (line.data) line.data[0] = 0;
        }
    }
    if (line.len) flow_log(c, "%s", line.data);
    buf_release(&line);
    close(fds[0]);
    int st;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR)
            return flow_ctx_fail(c, FLOW_E_IO, "waiting for the command: %s", strerror(errno));
    if (WIFSIGNALED(st))
        return flow_ctx_fail(c, FLOW_E_STAGE, "command killed by signal %d (%s)", WTERMSIG(st),
                             strsignal(WTERMSIG(st)));
    if (WEXITSTATUS(st) != 0)
        return flow_ctx_fail(c, FLOW_E_STAGE, "command exited with status %d", WEXITSTATUS(st));
    return 0;
}

/* ---- outputs ------------------------------------------------------------- */

static int store_file(flow_ctx *c, const char *path, const char *part)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return flow_ctx_fail(c, FLOW_E_IO, "cannot open output '%s': %s", path, strerror(errno));
    flow_out_stream *out;
    int rc = flow_out_open(c, part, FLOW_PART_BYTES, &out);
    if (rc) { close(fd); return rc; }
    char *buf = xmalloc(1 << 20);
    for (;;) {
        ssize_t n = read(fd, buf, 1 << 20);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            rc = flow_ctx_fail(c, FLOW_E_IO, "cannot read output '%s': %s", path, strerror(errno));
            break;
        }
        if (n == 0) break;
        if ((rc = flow_out_stream_write(out, buf, (size_t)n))) break;
    }
    free(buf);
    close(fd);
    int rc2 = flow_out_stream_close(out);
    return rc ? rc : rc2;
}

static int filter_dot(const struct dirent *d)
{
    return strcmp(d->d_name, ".") != 0 && strcmp(d->d_name, "..") != 0;
}

/* Stores a file, or a folder's files in sorted order (deterministic). */
static int collect(flow_ctx *c, const char *path, const char *part)
{
    struct stat st;
    if (lstat(path, &st) != 0)
        return flow_ctx_fail(c, FLOW_E_STAGE, "declared output '%s' was not created by the "
                             "command", part);
    if (S_ISREG(st.st_mode)) return store_file(c, path, part);
    if (!S_ISDIR(st.st_mode))
        return flow_ctx_fail(c, FLOW_E_STAGE, "output '%s' is neither a file nor a folder "
                             "(links are not followed)", part);
    struct dirent **ents;
    int n = scandir(path, &ents, filter_dot, alphasort);
    if (n < 0)
        return flow_ctx_fail(c, FLOW_E_IO, "cannot list output folder '%s': %s", path,
                             strerror(errno));
    int rc = 0;
    for (int i = 0; i < n; i++) {
        if (!rc) {
            char *sub = join(path, ents[i]->d_name), *subpart = join(part, ents[i]->d_name);
            rc = collect(c, sub, subpart);
            free(sub);
            free(subpart);
        }
        free(ents[i]);
    }
    free(ents);
    return rc;
}

/* Removes the temporary folders of workers that died without cleaning up
 * (kill -9, a crash): flow-exec-PID-* / flow-in-PID-* whose PID is gone.
 * Once per worker process. */
static void sweep_stale(const char *tmp)
{
    static int done;
    if (done) return;
    done = 1;
    DIR *d = opendir(tmp);
    if (!d) return;
    struct dirent *de;
    while ((de = readdir(d))) {
        const char *p = NULL;
        if (strncmp(de->d_name, "flow-exec-", 10) == 0) p = de->d_name + 10;
        else if (strncmp(de->d_name, "flow-in-", 8) == 0) p = de->d_name + 8;
        if (!p) continue;
        char *end;
        long pid = strtol(p, &end, 10);
        if (end == p || *end != '-' || pid <= 0 || pid == (long)getpid()) continue;
        if (kill((pid_t)pid, 0) == 0 || errno != ESRCH) continue;   /* alive, or not ours */
        char *path = join(tmp, de->d_name);
        rm_rf(path);
        free(path);
    }
    closedir(d);
}

static int run(flow_ctx *c)
{
    const char *cmd = flow_param_str(c, "command");
    const char *shell = flow_param_str(c, "shell");
    char *script = script_path(c);
    if (!cmd[0] && !script) {
        return flow_ctx_fail(c, FLOW_E_PARAM, "set `command` or `script` (both are empty)");
    }
    /* two private folders: work/ (the command's working folder, where it
     * leaves its outputs) and, only when there are inputs, in/ */
    const char *tmp = getenv("TMPDIR");
    if (!tmp || !*tmp) tmp = "/tmp";
    int nb = flow_in_count(c, "in");
    binding *bd = xcalloc((size_t)nb + 1, sizeof *bd);
    flow_buf wbuf, ibuf;
    buf_init(&wbuf);
    buf_init(&ibuf);
    sweep_stale(tmp);
    buf_printf(&wbuf, "%s/flow-exec-%d-XXXXXX", tmp, (int)getpid());
    buf_printf(&ibuf, "%s/flow-in-%d-XXXXXX", tmp, (int)getpid());
    char *work = wbuf.data, *indir = ibuf.data;
    int rc = 0, have_in = 0;
    if (!mkdtemp(work))
        rc = flow_ctx_fail(c, FLOW_E_IO, "cannot create a temporary folder '%s': %s", work,
                           strerror(errno));
    else if (nb > 0 && !(have_in = mkdtemp(indir) != NULL))
        rc = flow_ctx_fail(c, FLOW_E_IO, "cannot create a temporary folder '%s': %s", indir,
                           strerror(errno));
    if (!rc) rc = materialise(c, indir, bd, nb);
    flow_buf full;
    buf_init(&full);
    if (!rc) rc = expand(c, cmd, bd, nb, indir, work, script, &full);
    if (!rc) rc = run_command(c, shell, full.data ? full.data : "", script, work, indir, bd, nb);
    for (int i = 0; !rc && i < flow_param_list_len(c, "outputs"); i++) {
        const char *o = flow_param_list_str(c, "outputs", i);
        if (!o[0] || o[0] == '/' || strstr(o, ".."))
            rc = flow_ctx_fail(c, FLOW_E_PARAM, "output '%s' must be a relative path inside "
                               "the working folder", o);
        else {
            char *p = join(work, o);
            rc = collect(c, p, o);
            free(p);
        }
    }
    if (!rc) {
        flow_metric(c, "exec.outputs", flow_param_list_len(c, "outputs"));
    }
    rm_rf(work);
    if (have_in) rm_rf(indir);
    for (int i = 0; i < nb; i++) {
        free(bd[i].name);
        free(bd[i].path);
    }
    free(bd);
    buf_release(&full);
    buf_release(&wbuf);
    buf_release(&ibuf);
    free(script);
    return rc;
}

static int key_extra(flow_ctx *c, flow_hasher *h)
{
    char *script = script_path(c);
    if (!script) return 0;
    flow_hash fh;
    int rc = flow_file_hash(c, script, &fh);
    if (rc == 0) flow_hasher_update(h, fh.b, sizeof fh.b);
    free(script);
    return rc;
}

const flow_stage stage_exec = {
    .name = "exec",
    .version = 1,
    .help = "runs a shell command on input files and stores the files it declares",
    .params = params, .nparams = sizeof params / sizeof *params,
    .inputs = inputs, .ninputs = sizeof inputs / sizeof *inputs,
    .outputs = NULL, .noutputs = 0,
    .res = { .threads = 1, .gpus = 0, .cpu_fallback = 0, .gpu_capable = 1 },
    .run = run,
    .key_extra = key_extra,
};
