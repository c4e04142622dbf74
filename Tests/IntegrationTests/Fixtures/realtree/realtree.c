// realtree: builds a random process tree with real system calls, from a seed, then holds.
//
//   realtree SEED READYFILE [MAXPROCS] [FEATURES]
//
// FEATURES is a string of letters (default "gsztpun"): g setpgid (own group, a pipeline's
// group chosen by the parent), s setsid, z exits (zombies with any exit code or signal, reaped
// or not; intermediate processes that die after forking, so their children are orphaned),
// t threads, p SIGSTOP, u PR_SET_CHILD_SUBREAPER on inner processes, n namespaces: the root
// calls unshare(CLONE_NEWUSER) (mapping its ids to 0) and processes unshare(CLONE_NEWPID) for
// subtrees (up to two levels; the unsharer forks only the namespace's init). The root calls
// setsid() and sets PR_SET_CHILD_SUBREAPER so every orphan stays in the tree.
//
// The tree is built one process at a time (each child reports "done" on a pipe before its
// parent goes on, and its parent waits until it has stopped or exited when it does), so a seed
// always gives the same shape. When everything is built the root creates READYFILE (its
// content: the number of processes created) and every living process holds in pause().

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

static uint64_t rng_state;
static uint64_t next_random(void) {
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static int chance(int percent) { return (int)(next_random() % 100) < percent; }
static int pick(int n) { return (int)(next_random() % (uint64_t)n); }

static const char *features = "gsztpun";
static int has(char f) { return strchr(features, f) != NULL; }

static int *created;    // shared counter of processes made (MAP_SHARED)
static int max_procs = 16;

enum ending { HOLD, STOP, EXIT_CODE, EXIT_SIGNAL, DIE_AFTER_FORKING };

static void die(const char *what) {
    fprintf(stderr, "realtree %d: %s: %s\n", getpid(), what, strerror(errno));
    _exit(99);
}

static void *thread_hold(void *arg) {
    (void)arg;
    for (;;) pause();
    return NULL;
}

static void write_file(const char *path, const char *text) {
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0) die(path);
    if (write(fd, text, strlen(text)) != (ssize_t)strlen(text)) die(path);
    close(fd);
}

// Maps the caller's ids to 0 in the user namespace it just created.
static void map_self(uid_t uid, gid_t gid) {
    char line[64];
    write_file("/proc/self/setgroups", "deny");
    snprintf(line, sizeof line, "0 %u 1\n", (unsigned)uid);
    write_file("/proc/self/uid_map", line);
    snprintf(line, sizeof line, "0 %u 1\n", (unsigned)gid);
    write_file("/proc/self/gid_map", line);
}

static void end_as(enum ending how, int code) {
    switch (how) {
    case STOP:
        raise(SIGSTOP);
        for (;;) pause();
    case EXIT_CODE:
    case DIE_AFTER_FORKING:
        _exit(code);
    case EXIT_SIGNAL: {
        static const int sigs[] = {SIGTERM, SIGKILL, SIGUSR1, SIGINT};
        struct rlimit none = {0, 0};
        setrlimit(RLIMIT_CORE, &none);
        signal(sigs[code % 4], SIG_DFL);
        sigset_t all;
        sigemptyset(&all);
        sigprocmask(SIG_SETMASK, &all, NULL);
        raise(sigs[code % 4]);
        _exit(98);
    }
    case HOLD:
        break;
    }
    for (;;) pause();
}

// One process's own actions and its children, one by one; the caller ends it.
// `ns_depth`: nested PID namespaces above it made by this program (an init of one always
// holds: its namespace would die with it).
static void live(int depth, int ns_depth) {
    int threaded = 0;
    int unshared = 0;
    int ns_init_made = 0;
    if (depth > 0) {
        if (has('s') && chance(20)) setsid();
        else if (has('g') && chance(20)) setpgid(0, 0);
        if (has('u') && chance(10)) prctl(PR_SET_CHILD_SUBREAPER, 1);
    }
    // Children, one at a time.
    int nchildren = depth >= 5 ? 0 : pick(depth == 0 ? 5 : 4);
    pid_t first_child = 0;
    for (int c = 0; c < nchildren && __atomic_load_n(created, __ATOMIC_SEQ_CST) < max_procs; c++) {
        if (!threaded && !unshared && has('n') && ns_depth < 2 && depth > 0 && chance(12)) {
            if (unshare(CLONE_NEWPID) == 0) unshared = 1;
        }
        enum ending how = HOLD;
        int code = 0;
        int reap = 0;
        int child_is_init = unshared && !ns_init_made;
        if (child_is_init) ns_init_made = 1;
        if (!child_is_init) {
            int r = pick(100);
            if (has('p') && r < 10) how = STOP;
            else if (has('z') && r < 25) { how = EXIT_CODE; code = pick(256); reap = chance(30); }
            else if (has('z') && r < 32) { how = EXIT_SIGNAL; code = pick(4); reap = chance(30); }
            else if (has('z') && r < 45) { how = DIE_AFTER_FORKING; code = pick(256); reap = chance(50); }
        }
        // The parent puts the child in a group (not a new namespace's init: a parent that
        // moves it into a group from outside is a shape the planner cannot rebuild yet).
        int group_choice = has('g') ? pick(10) : 0;
        if (child_is_init) group_choice = 0;
        uint64_t child_seed = next_random();
        int done[2], go[2];
        if (pipe2(done, O_CLOEXEC) < 0 || pipe2(go, O_CLOEXEC) < 0) die("pipe2");
        __atomic_add_fetch(created, 1, __ATOMIC_SEQ_CST);
        pid_t pid = fork();
        if (pid < 0) die("fork");
        if (pid == 0) {
            close(done[0]);
            close(go[1]);
            char b;
            if (read(go[0], &b, 1) != 1) _exit(97);
            close(go[0]);
            rng_state = child_seed;
            // Its own children first (none for a process that exits at once); then it reports
            // and ends: one that dies after forking leaves its children orphaned.
            if (how == HOLD || how == STOP || how == DIE_AFTER_FORKING)
                live(depth + 1, ns_depth + child_is_init);
            if (write(done[1], "x", 1) != 1) _exit(96);
            end_as(how, code);
        }
        close(done[1]);
        close(go[0]);
        if (first_child == 0) first_child = pid;
        if (group_choice == 1) setpgid(pid, pid);                       // its own job
        else if (group_choice == 2 && first_child != pid) setpgid(pid, first_child); // a pipeline
        if (write(go[1], "g", 1) != 1) die("write go");
        close(go[1]);
        char b;
        if (read(done[0], &b, 1) != 1) die("read done");
        close(done[0]);
        // Only the namespace's init is forked into it: a later child would be in the
        // namespace with its parent outside, which no restore creates.
        if (child_is_init) c = nchildren;
        siginfo_t info;
        if (how == STOP) {
            while (waitid(P_PID, pid, &info, WSTOPPED | WNOWAIT) < 0 && errno == EINTR) {}
        } else if (how != HOLD) {
            while (waitid(P_PID, pid, &info, WEXITED | WNOWAIT) < 0 && errno == EINTR) {}
            if (reap) waitpid(pid, NULL, 0);
        }
    }
    if (has('t') && !unshared && chance(15)) {
        int n = 1 + pick(2);
        for (int i = 0; i < n; i++) {
            pthread_t t;
            if (pthread_create(&t, NULL, thread_hold, NULL) == 0) threaded = 1;
        }
    }
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: realtree SEED READYFILE [MAXPROCS] [FEATURES]\n");
        return 2;
    }
    rng_state = strtoull(argv[1], NULL, 10) * 0x2545F4914F6CDD1Dull + 1;
    if (argc > 3) max_procs = atoi(argv[3]);
    if (argc > 4) features = argv[4];
    created = mmap(NULL, sizeof *created, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (created == MAP_FAILED) die("mmap");
    *created = 1;
    if (has('n')) {
        // The whole tree in a user namespace of its own (the root's map becomes the tree's),
        // where its processes may unshare PID namespaces.
        uid_t uid = getuid();
        gid_t gid = getgid();
        if (unshare(CLONE_NEWUSER) < 0) die("unshare(CLONE_NEWUSER)");
        map_self(uid, gid);
    }
    setsid();
    prctl(PR_SET_CHILD_SUBREAPER, 1);
    live(0, 0);
    char text[32];
    snprintf(text, sizeof text, "%d\n", *created);
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", argv[2]);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) die(tmp);
    if (write(fd, text, strlen(text)) < 0) die(tmp);
    close(fd);
    if (rename(tmp, argv[2]) < 0) die("rename");
    for (;;) pause();
}
