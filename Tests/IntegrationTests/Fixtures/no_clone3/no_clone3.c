/*
 * no_clone3 PROGRAM ARGS...: runs PROGRAM under a seccomp filter that makes clone3 fail with
 * ENOSYS, as Docker's default profile does, so that a runtime sees a kernel without clone3.
 * NO_CLONE3_ERRNO=N in the environment makes it fail with errno N instead (an unusual answer,
 * such as an older profile's EPERM). (no_new_privs is set, as an unprivileged filter needs.)
 *
 *   cc -O1 -o no_clone3 no_clone3.c
 */
#include <errno.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef __NR_clone3
#define __NR_clone3 435
#endif

int main(int argc, char **argv) {
    if (argc < 2) { fprintf(stderr, "usage: no_clone3 PROGRAM ARGS...\n"); return 64; }
    const char *chosen = getenv("NO_CLONE3_ERRNO");
    unsigned int e = chosen ? (unsigned int)atoi(chosen) : ENOSYS;
    struct sock_filter code[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_clone3, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (e & SECCOMP_RET_DATA)),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = { .len = sizeof(code) / sizeof(code[0]), .filter = code };
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) { perror("no_clone3: prctl"); return 1; }
    if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) != 0) { perror("no_clone3: seccomp"); return 1; }
    execv(argv[1], argv + 1);
    perror("no_clone3: execv");
    return 127;
}
