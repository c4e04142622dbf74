/*
 * fork_storm N: forks N children one after another, as dash forks its jobs: SIGCHLD is caught
 * by a handler installed without SA_RESTART, so a fork waiting in a seccomp user notification
 * that the supervisor has not received yet fails with EINTR when a child's SIGCHLD arrives
 * (dash then says "Cannot fork"). Each child exits after 0 to 2 ms, so children keep exiting
 * while the next forks wait. The forks are paced, one every INTERVAL µs (default 1000; a fork
 * that returns later is followed at once), so that the rate of SIGCHLDs, and with it the share
 * of forks interrupted, depends on how long a fork waits unreceived, not on how fast the
 * supervisor lets the forks go (a faster supervisor made more forks per second, so more
 * SIGCHLDs per fork). A fork failing with EINTR is counted and tried again; at the end:
 *   forks=N eintr=K us=ELAPSED other=M
 * (exit 0). Bounded: N forks, and at most N failed attempts of any other kind.
 *
 *   cc -O1 -o fork_storm fork_storm.c
 *   fork_storm N [INTERVAL [DELAY]]
 * DELAY (ms, default 0): a wait before the first fork, so that whoever watches the namespace
 * sees it before the storm is over.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t children_ended;
static void on_child(int sig) { (void)sig; children_ended++; }

int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 200;
    long interval_ns = (argc > 2 ? atol(argv[2]) : 1000) * 1000L;
    long delay_ms = argc > 3 ? atol(argv[3]) : 0;
    struct timespec delay = { delay_ms / 1000, (delay_ms % 1000) * 1000000L };
    while (nanosleep(&delay, &delay) != 0 && errno == EINTR) {}
    struct timespec start, next;
    clock_gettime(CLOCK_MONOTONIC, &start);
    next = start;
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_child;
    sa.sa_flags = 0; /* no SA_RESTART, as dash */
    sigaction(SIGCHLD, &sa, NULL);
    int eintr = 0, other = 0;
    for (int made = 0; made < n;) {
        /* The next fork's start: INTERVAL after the previous one's (SIGCHLD interrupts the
         * sleep: it goes on to the same time). */
        while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &next, NULL) == EINTR) {}
        pid_t p = fork();
        if (p == 0) {
            /* 0 to 2 ms, spread (not a multiple of the interval). */
            struct timespec ts = { 0, (long)((made * 7919L) % 2000) * 1000L };
            nanosleep(&ts, NULL);
            _exit(0);
        }
        if (p > 0) {
            made++;
            next.tv_nsec += interval_ns;
            while (next.tv_nsec >= 1000000000L) { next.tv_nsec -= 1000000000L; next.tv_sec++; }
        } else if (errno == EINTR) {
            eintr++;
        } else if (++other > n) {
            break;
        }
        while (waitpid(-1, NULL, WNOHANG) > 0) {}
    }
    while (wait(NULL) > 0 || errno == EINTR) {}
    struct timespec end;
    clock_gettime(CLOCK_MONOTONIC, &end);
    long us = (end.tv_sec - start.tv_sec) * 1000000L + (end.tv_nsec - start.tv_nsec) / 1000L;
    printf("forks=%d eintr=%d us=%ld other=%d\n", n, eintr, us, other);
    return 0;
}
