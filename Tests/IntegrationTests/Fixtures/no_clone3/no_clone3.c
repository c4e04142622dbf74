/*
 * no_clone3 PROGRAM ARGS...: runs PROGRAM under a seccomp filter that makes clone3 fail with
 * ENOSYS, as Docker's default profile does, so that a runtime sees a kernel without clone3.
 * NO_CLONE3_ERRNO=N in the environment makes it fail with errno N instead (an unusual answer,
 * such as an older profile's EPERM).
 * NO_KILLABLE_RECV=1 leaves clone3 alone and plays a kernel before 5.19 for
 * SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV: seccomp() with that flag and no program (a probe) fails
 * with EINVAL, and with a program it kills the caller, so that a runtime that tries the flag
 * after its probe said no is caught. (little-endian: the low halves of the arguments first.)
 * (no_new_privs is set, as an unprivileged filter needs.)
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
    struct sock_filter clone3_code[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_clone3, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (e & SECCOMP_RET_DATA)),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_filter killable_code[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_seccomp, 0, 8),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[1])),
        BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, 1U << 5, 0, 6),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[2])),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 0, 0, 3),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[2]) + 4),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 0, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EINVAL),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    int killable = getenv("NO_KILLABLE_RECV") != NULL;
    struct sock_filter *code = killable ? killable_code : clone3_code;
    unsigned short len = killable ? sizeof(killable_code) / sizeof(killable_code[0]) : sizeof(clone3_code) / sizeof(clone3_code[0]);
    struct sock_fprog prog = { .len = len, .filter = code };
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) { perror("no_clone3: prctl"); return 1; }
    if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) != 0) { perror("no_clone3: seccomp"); return 1; }
    execv(argv[1], argv + 1);
    perror("no_clone3: execv");
    return 127;
}
