/* The C binding, from C: write, commit, read back, diff, and every error
 * path returning a status and a message. Run under valgrind by .ci/run,
 * so every handle and buffer is freed.
 *
 *   vst_test DIR    (DIR: a directory that does not exist yet)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vst.h"

static int failures = 0;

#define CHECK(cond)                                                        \
    do {                                                                   \
        if (!(cond)) {                                                     \
            fprintf(stderr, "%s:%d: failed: %s (last error: %s)\n",        \
                    __FILE__, __LINE__, #cond, vst_last_error());          \
            failures++;                                                    \
        }                                                                  \
    } while (0)

/* A failing call: the status, and a message that contains `needle`. */
#define CHECK_ERR(call, status, needle)                                    \
    do {                                                                   \
        VstStatus s_ = (call);                                             \
        if (s_ != (status) || strstr(vst_last_error(), (needle)) == NULL) {\
            fprintf(stderr, "%s:%d: %s: status %d, message \"%s\"; "       \
                    "want status %d and \"%s\"\n", __FILE__, __LINE__,     \
                    #call, (int)s_, vst_last_error(), (int)(status),       \
                    (needle));                                             \
            failures++;                                                    \
        }                                                                  \
    } while (0)

#define P(s) (const uint8_t *)(s), strlen(s)

static int buf_is(VstBuf buf, const char *want) {
    int same = buf.len == strlen(want) && memcmp(buf.data, want, buf.len) == 0;
    vst_buf_free(buf);
    return same;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: vst_test DIR\n");
        return 2;
    }
    const char *dir = argv[1];
    CHECK(strcmp(vst_last_error(), "") == 0);

    VstRepo *repo = NULL;
    CHECK(vst_repo_init(dir, &repo) == VST_STATUS_OK);
    if (repo == NULL) return 1;

    /* Write, commit, read back. */
    VstWorkingSet *ws = NULL;
    CHECK(vst_working_set_open(repo, NULL, &ws) == VST_STATUS_OK);
    VstId blob;
    CHECK(vst_working_set_write(ws, P("src/main.c"), P("int main;\n"), &blob) == VST_STATUS_OK);
    /* The blob id is BLAKE3 of the content. */
    CHECK(strcmp(blob.hex, "bf2d319abeb01f2d1b2c1d44a72991ed25eb953c4c290ef560bc384c30a87b92") == 0);
    const char latin1[] = "caf\xe9.txt"; /* not UTF-8: paths are bytes */
    VstFile files[] = {
        {P("a.txt"), P("a")},
        {P("b.txt"), P("b")},
        {P(latin1), P("latin-1")},
    };
    CHECK(vst_working_set_write_many(ws, files, 3) == VST_STATUS_OK);
    VstBuf buf;
    CHECK(vst_working_set_read(ws, P("a.txt"), &buf) == VST_STATUS_OK && buf_is(buf, "a"));

    VstId first;
    CHECK(vst_commit(repo, ws, "first", NULL, &first) == VST_STATUS_OK);
    CHECK(strlen(first.hex) == 64);
    VstId head;
    CHECK(vst_resolve(repo, "HEAD", &head) == VST_STATUS_OK && strcmp(head.hex, first.hex) == 0);
    CHECK(vst_read(repo, first.hex, P("src/main.c"), &buf) == VST_STATUS_OK &&
          buf_is(buf, "int main;\n"));
    CHECK(vst_read(repo, "main", P(latin1), &buf) == VST_STATUS_OK && buf_is(buf, "latin-1"));

    /* A snapshot does not see later writes. */
    VstSnapshot *snap = NULL;
    CHECK(vst_working_set_snapshot(ws, &snap) == VST_STATUS_OK);
    CHECK(vst_working_set_write(ws, P("a.txt"), P("A"), NULL) == VST_STATUS_OK);
    CHECK(vst_snapshot_read(snap, P("a.txt"), &buf) == VST_STATUS_OK && buf_is(buf, "a"));
    vst_snapshot_free(snap);

    CHECK(vst_working_set_remove(ws, P("b.txt")) == VST_STATUS_OK);
    CHECK(vst_working_set_write(ws, P("new/file"), P(""), NULL) == VST_STATUS_OK);
    VstId second;
    CHECK(vst_commit(repo, ws, "second", NULL, &second) == VST_STATUS_OK);
    CHECK(vst_read(repo, "HEAD~1", P("a.txt"), &buf) == VST_STATUS_OK && buf_is(buf, "a"));
    CHECK(vst_read(repo, "HEAD", P("new/file"), &buf) == VST_STATUS_OK && buf_is(buf, ""));

    /* Diff, in path order, with the CLI's words. */
    VstDiff *diff = NULL;
    CHECK(vst_diff(repo, first.hex, "HEAD", &diff) == VST_STATUS_OK);
    const char *want[][2] = {{"a.txt", "modified"}, {"b.txt", "deleted"}, {"new/file", "added"}};
    VstChange change;
    VstStatus s;
    int n = 0;
    while ((s = vst_diff_next(diff, &change)) == VST_STATUS_OK) {
        CHECK(n < 3);
        if (n < 3) {
            CHECK(change.path_len == strlen(want[n][0]) &&
                  memcmp(change.path, want[n][0], change.path_len) == 0);
            CHECK(strcmp(change.status, want[n][1]) == 0);
        }
        n++;
    }
    CHECK(s == VST_STATUS_END && n == 3);
    CHECK(vst_diff_next(diff, &change) == VST_STATUS_END);
    vst_diff_free(diff);
    diff = NULL;
    CHECK(vst_diff(repo, NULL, first.hex, &diff) == VST_STATUS_OK);
    n = 0;
    while (vst_diff_next(diff, &change) == VST_STATUS_OK) {
        CHECK(strcmp(change.status, "added") == 0);
        n++;
    }
    CHECK(n == 4);
    vst_diff_free(diff);

    /* Another branch, from an empty working set. */
    VstWorkingSet *other = NULL;
    CHECK(vst_working_set_open(repo, "other", &other) == VST_STATUS_OK);
    CHECK(vst_working_set_write(other, P("only-here"), P("x"), NULL) == VST_STATUS_OK);
    VstId on_other;
    CHECK(vst_commit(repo, other, "other", "other", &on_other) == VST_STATUS_OK);
    CHECK(vst_read(repo, "other", P("only-here"), &buf) == VST_STATUS_OK && buf_is(buf, "x"));
    CHECK(vst_resolve(repo, "main", &head) == VST_STATUS_OK && strcmp(head.hex, second.hex) == 0);

    /* Every error path: a status and a message. */
    VstRepo *none = NULL;
    CHECK_ERR(vst_repo_init(NULL, &none), VST_STATUS_INVALID_ARGUMENT, "path is NULL");
    CHECK_ERR(vst_repo_init(dir, NULL), VST_STATUS_INVALID_ARGUMENT, "out is NULL");
    CHECK_ERR(vst_repo_init(dir, &none), VST_STATUS_ERROR, "already holds a repository");
    CHECK_ERR(vst_repo_open("/", &none), VST_STATUS_ERROR, "not in a vst repository");
    CHECK_ERR(vst_repo_open(dir, &none), VST_STATUS_ERROR, "in use");
    CHECK_ERR(vst_repo_open("\xff", &none), VST_STATUS_INVALID_ARGUMENT, "path is not UTF-8");
    CHECK(none == NULL);
    CHECK_ERR(vst_resolve(NULL, "HEAD", &head), VST_STATUS_INVALID_ARGUMENT, "repo is NULL");
    CHECK_ERR(vst_resolve(repo, "nope", &head), VST_STATUS_BAD_REVISION, "unknown revision");
    CHECK_ERR(vst_resolve(repo, "HEAD~9", &head), VST_STATUS_BAD_REVISION, "only 1 ancestors");
    CHECK_ERR(vst_resolve(repo, "HEAD~x", &head), VST_STATUS_BAD_REVISION, "not a number");
    CHECK_ERR(vst_working_set_open(repo, "bad name", &other), VST_STATUS_INVALID_ARGUMENT, "bad name");
    CHECK_ERR(vst_working_set_open(NULL, NULL, &other), VST_STATUS_INVALID_ARGUMENT, "repo is NULL");
    CHECK_ERR(vst_working_set_write(NULL, P("a"), P("a"), NULL), VST_STATUS_INVALID_ARGUMENT, "ws is NULL");
    CHECK_ERR(vst_working_set_write(ws, P("a//b"), P("a"), NULL), VST_STATUS_INVALID_ARGUMENT, "invalid path");
    CHECK_ERR(vst_working_set_write(ws, NULL, 1, P("a"), NULL), VST_STATUS_INVALID_ARGUMENT, "path is NULL");
    CHECK_ERR(vst_working_set_write(ws, P("a"), NULL, 3, NULL), VST_STATUS_INVALID_ARGUMENT, "data is NULL");
    CHECK_ERR(vst_working_set_write(ws, P("new/file/below"), P("a"), NULL), VST_STATUS_INVALID_ARGUMENT, "not a directory");
    CHECK_ERR(vst_working_set_write_many(ws, NULL, 2), VST_STATUS_INVALID_ARGUMENT, "files is NULL");
    VstFile bad[] = {{P("fine"), P("x")}, {P(".."), P("x")}};
    CHECK_ERR(vst_working_set_write_many(ws, bad, 2), VST_STATUS_INVALID_ARGUMENT, "invalid path");
    CHECK_ERR(vst_working_set_read(ws, P("fine"), &buf), VST_STATUS_NOT_FOUND, "no such file or directory: fine");
    CHECK_ERR(vst_working_set_read(ws, P("a.txt"), NULL), VST_STATUS_INVALID_ARGUMENT, "out is NULL");
    CHECK_ERR(vst_working_set_remove(ws, P("missing")), VST_STATUS_NOT_FOUND, "missing");
    CHECK_ERR(vst_working_set_snapshot(NULL, &snap), VST_STATUS_INVALID_ARGUMENT, "ws is NULL");
    CHECK_ERR(vst_snapshot_read(NULL, P("a"), &buf), VST_STATUS_INVALID_ARGUMENT, "snapshot is NULL");
    CHECK_ERR(vst_commit(repo, ws, NULL, NULL, &head), VST_STATUS_INVALID_ARGUMENT, "message is NULL");
    CHECK_ERR(vst_commit(repo, NULL, "m", NULL, &head), VST_STATUS_INVALID_ARGUMENT, "ws is NULL");
    CHECK_ERR(vst_read(repo, "HEAD", P("missing"), &buf), VST_STATUS_NOT_FOUND, "no such file or directory: missing");
    CHECK_ERR(vst_read(repo, "HEAD", P("new"), &buf), VST_STATUS_INVALID_ARGUMENT, "");
    CHECK_ERR(vst_read(repo, NULL, P("a"), &buf), VST_STATUS_INVALID_ARGUMENT, "rev is NULL");
    CHECK_ERR(vst_diff(repo, "nope", NULL, &diff), VST_STATUS_BAD_REVISION, "unknown revision");
    CHECK_ERR(vst_diff(repo, NULL, NULL, NULL), VST_STATUS_INVALID_ARGUMENT, "out is NULL");
    CHECK_ERR(vst_diff_next(NULL, &change), VST_STATUS_INVALID_ARGUMENT, "diff is NULL");

    /* A working set behind its branch: refused, nothing published. */
    VstWorkingSet *stale = NULL;
    CHECK(vst_working_set_open(repo, NULL, &stale) == VST_STATUS_OK);
    CHECK(vst_working_set_write(ws, P("a.txt"), P("moved on"), NULL) == VST_STATUS_OK);
    CHECK(vst_commit(repo, ws, "moves main", NULL, &head) == VST_STATUS_OK);
    CHECK(vst_working_set_write(stale, P("a.txt"), P("stale"), NULL) == VST_STATUS_OK);
    CHECK_ERR(vst_commit(repo, stale, "refused", NULL, &first), VST_STATUS_CONFLICT, "main");
    CHECK(vst_read(repo, "HEAD", P("a.txt"), &buf) == VST_STATUS_OK && buf_is(buf, "moved on"));

    /* Freeing NULL is allowed. */
    vst_repo_free(NULL);
    vst_working_set_free(NULL);
    vst_snapshot_free(NULL);
    vst_diff_free(NULL);
    VstBuf empty = {NULL, 0};
    vst_buf_free(empty);

    vst_working_set_free(stale);
    vst_working_set_free(other);
    vst_working_set_free(ws);
    vst_repo_free(repo);
    repo = NULL;

    /* Once freed, the repository opens again. */
    CHECK(vst_repo_open(dir, &repo) == VST_STATUS_OK);
    CHECK(vst_read(repo, "other", P("only-here"), &buf) == VST_STATUS_OK && buf_is(buf, "x"));
    vst_repo_free(repo);
    repo = NULL;

    if (failures) {
        fprintf(stderr, "%d check(s) failed\n", failures);
        return 1;
    }
    printf("vst C binding: all checks passed\n");
    return 0;
}
