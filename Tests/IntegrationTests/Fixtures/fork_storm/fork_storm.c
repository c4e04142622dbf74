/*
 * fork_storm N: forks N children one after another, as dash forks its jobs: SIGCHLD is caught
 * by a handler installed without SA_RESTART, so a fork waiting in a seccomp user notification
 * that the supervisor has not received yet fails with EINTR when a child's SIGCHLD arrives
 * (dash then says "Cannot fork"). Each child exits after 0 to 2 ms, so children keep exiting
 * while the next forks wait. A fork failing with EINTR is counted and tried again; at the end:
 *   forks=N eintr=K other=M
 * (exit 0). Bounded: N forks, and at most N failed attempts of any other kind.
 *
 *   cc -O1 -o fork_storm fork_storm.c
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
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_child;
    sa.sa_flags = 0; /* no SA_RESTART, as dash */
    sigaction(SIGCHLD, &sa, NULL);
    int eintr = 0, other = 0;
    for (int made = 0; made < n;) {
        pid_t p = fork();
        if (p == 0) {
            struct timespec ts = { 0, (long)(made % 5) * 500000L };
            nanosleep(&ts, NULL);
            _exit(0);
        }
        if (p > 0) {
            made++;
        } else if (errno == EINTR) {
            eintr++;
        } else if (++other > n) {
            break;
        }
        while (waitpid(-1, NULL, WNOHANG) > 0) {}
    }
    while (wait(NULL) > 0 || errno == EINTR) {}
    printf("forks=%d eintr=%d other=%d\n", n, eintr, other);
    return 0;
}
