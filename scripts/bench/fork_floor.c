/*
 * The floor for scripts/bench.sh: what plain fork() costs on this machine, with no namespace,
 * no chosen PIDs and no coordination beyond one byte per process.
 *
 *   fork_floor exit N    fork + _exit + waitpid, N times in a row
 *   fork_floor flat N    one parent forks N children that stay alive (a flat tree)
 *   fork_floor flat-sync N   the flat tree in lockstep: the parent forks the next child only
 *                        once the previous one has said it runs (as the runtime does)
 *   fork_floor deep N    a chain of N processes, each forked by the previous one
 *   fork_floor exec-true N   fork N children that each exec /bin/true, then reap them all
 *                        (the floor of a `run` of N processes exec'ing /bin/true)
 *   fork_floor deep-exec N   the same chain, but each new process first re-executes this
 *                        program (a fresh address space), as a runtime could do to keep the
 *                        kernel's anon_vma chains from growing with the depth
 *
 * In flat and deep every new process writes one byte to a pipe once it runs (as a restored
 * process answers "ready" to the runtime) and then holds in pause(); the creation time ends
 * when the N-th byte is read. Then everything is killed with one kill(-pgid, SIGKILL) and
 * reaped (this process is a child subreaper, so the chain's orphans come back to it), and
 * that is timed separately. Before the kill, `hold` mode prints the tree's memory figures.
 *
 * Output, one line:  mode N create_us_per_process total_create_ms teardown_ms
 *                    rss_kb_sample private_dirty_kb_sample d_memavail_kb d_kernelstack_kb d_pagetables_kb
 * (VmRSS and Private_Dirty of one held process; how much /proc/meminfo's MemAvailable fell
 * and KernelStack and PageTables grew while the tree was built: all 0 for `exit`).
 *
 * Built by scripts/bench.sh with `cc -O2`; Linux only.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static void die(const char *what) {
    fprintf(stderr, "fork_floor: %s: %s\n", what, strerror(errno));
    exit(1);
}

/* A held process: says it runs, then waits for SIGKILL. */
static void hold(int ready_fd) {
    char b = 1;
    if (write(ready_fd, &b, 1) != 1) _exit(2);
    for (;;) pause();
}

/* A held process in lockstep mode: also tells its parent it runs. */
static void hold_ack(int ready_fd, int ack_fd) {
    char b = 1;
    if (write(ack_fd, &b, 1) != 1) _exit(2);
    hold(ready_fd);
}

/* One field (in kB) of a /proc file such as status or smaps_rollup; 0 if absent. */
static long proc_kb(pid_t pid, const char *file, const char *key) {
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/%s", (int)pid, file);
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    long v = 0;
    size_t k = strlen(key);
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, key, k) == 0 && line[k] == ':') { v = strtol(line + k + 1, NULL, 10); break; }
    }
    fclose(f);
    return v;
}

static long meminfo_kb(const char *key) {
    FILE *f = fopen("/proc/meminfo", "r");
    if (!f) return 0;
    char line[256];
    long v = 0;
    size_t k = strlen(key);
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, key, k) == 0 && line[k] == ':') { v = strtol(line + k + 1, NULL, 10); break; }
    }
    fclose(f);
    return v;
}

static void read_ready(int fd, long n) {
    char buf[4096];
    long got = 0;
    while (got < n) {
        ssize_t r = read(fd, buf, sizeof buf);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) die("read ready pipe (a process died?)");
        got += r;
    }
}

/* One link of the deep-exec chain: `fork_floor link REMAINING READY_FD`. */
static void link_main(long remaining, int ready_fd) {
    while (remaining > 1) {
        pid_t p = fork();
        if (p < 0) _exit(3);
        if (p == 0) {
            char left[32], fd[16];
            snprintf(left, sizeof left, "%ld", remaining - 1);
            snprintf(fd, sizeof fd, "%d", ready_fd);
            execl("/proc/self/exe", "fork_floor", "link", left, fd, (char *)NULL);
            _exit(4);
        }
        hold(ready_fd);
    }
    hold(ready_fd);
}

int main(int argc, char **argv) {
    if (argc == 4 && strcmp(argv[1], "link") == 0) {
        link_main(strtol(argv[2], NULL, 10), (int)strtol(argv[3], NULL, 10));
    }
    if (argc != 3) {
        fprintf(stderr, "usage: fork_floor exit|exec-true|flat|flat-sync|deep|deep-exec N\n");
        return 64;
    }
    const char *mode = argv[1];
    long n = strtol(argv[2], NULL, 10);
    if (n < 1) { fprintf(stderr, "fork_floor: N must be >= 1\n"); return 64; }

    if (strcmp(mode, "exit") == 0) {
        double t0 = now_us();
        for (long i = 0; i < n; i++) {
            pid_t p = fork();
            if (p < 0) die("fork");
            if (p == 0) _exit(0);
            int st;
            while (waitpid(p, &st, 0) < 0 && errno == EINTR) {}
        }
        double t = now_us() - t0;
        printf("exit %ld %.2f %.1f 0 0 0 0 0 0\n", n, t / n, t / 1000);
        return 0;
    }

    if (strcmp(mode, "exec-true") == 0) {
        double t0 = now_us();
        for (long i = 0; i < n; i++) {
            pid_t p = fork();
            if (p < 0) die("fork");
            if (p == 0) { execl("/bin/true", "true", (char *)NULL); _exit(127); }
        }
        int st;
        while (wait(&st) > 0 || errno == EINTR) {}
        double t = now_us() - t0;
        printf("exec-true %ld %.2f %.1f 0 0 0 0 0 0\n", n, t / n, t / 1000);
        return 0;
    }

    int sync = strcmp(mode, "flat-sync") == 0;
    int flat = sync || strcmp(mode, "flat") == 0;
    int exec_links = strcmp(mode, "deep-exec") == 0;
    if (!flat && !exec_links && strcmp(mode, "deep") != 0) { fprintf(stderr, "fork_floor: unknown mode %s\n", mode); return 64; }
    if (prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) < 0) die("PR_SET_CHILD_SUBREAPER");
    int fds[2];
    if (pipe(fds) < 0) die("pipe");

    long avail0 = meminfo_kb("MemAvailable"), stack0 = meminfo_kb("KernelStack"), pt0 = meminfo_kb("PageTables");
    double t0 = now_us();
    pid_t first = fork();
    if (first < 0) die("fork");
    if (first == 0) {
        /* The tree's root: its own process group, so one kill reaches every process. */
        close(fds[0]);
        setpgid(0, 0);
        prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
        if (exec_links) {
            link_main(n, fds[1]);
        } else if (flat) {
            int ack[2] = { -1, -1 };
            if (sync && pipe(ack) < 0) _exit(3);
            for (long i = 1; i < n; i++) {
                pid_t p = fork();
                if (p < 0) _exit(3);
                if (p == 0) {
                    if (sync) hold_ack(fds[1], ack[1]);
                    hold(fds[1]);
                }
                if (sync) {
                    char b;
                    while (read(ack[0], &b, 1) < 0 && errno == EINTR) {}
                }
            }
            hold(fds[1]);
        } else {
            for (long i = 1; i < n; i++) {
                pid_t p = fork();
                if (p < 0) _exit(3);
                if (p > 0) hold(fds[1]); /* the parent stays; the child goes on down the chain */
            }
            hold(fds[1]);
        }
    }
    setpgid(first, first); /* no race with the child's own setpgid: same result */
    close(fds[1]);
    read_ready(fds[0], n);
    double created = now_us() - t0;

    long davail = avail0 - meminfo_kb("MemAvailable");
    long dstack = meminfo_kb("KernelStack") - stack0, dpt = meminfo_kb("PageTables") - pt0;
    long rss = proc_kb(first, "status", "VmRSS");
    long dirty = proc_kb(first, "smaps_rollup", "Private_Dirty");

    double t1 = now_us();
    if (kill(-first, SIGKILL) < 0) die("kill");
    long reaped = 0;
    for (;;) {
        int st;
        pid_t p = waitpid(-1, &st, 0);
        if (p > 0) { reaped++; continue; }
        if (errno == EINTR) continue;
        break; /* ECHILD: all gone */
    }
    double teardown = now_us() - t1;
    if (reaped != n) fprintf(stderr, "fork_floor: reaped %ld of %ld\n", reaped, n);
    printf("%s %ld %.2f %.1f %.1f %ld %ld %ld %ld %ld\n", mode, n, created / n, created / 1000, teardown / 1000, rss, dirty,
           davail, dstack, dpt);
    return 0;
}
