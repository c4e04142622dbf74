#define _GNU_SOURCE
#include "CRestoreShim.h"
#include <errno.h>
#include <fcntl.h>
#include <dirent.h>
#include <poll.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <linux/futex.h>
#include <sys/prctl.h>
#include <linux/capability.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <grp.h>
#include <sys/uio.h>
#include <sys/mman.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/ioctl.h>

#ifndef SYS_clone3
#define SYS_clone3 435
#endif


/* A system call without glibc's errno: the kernel's result (-errno on failure) as it is.
 * Puppets share one address space and so one thread-local errno; whatever a puppet reports
 * must not pass through it, or another puppet's failure can land in between. */
static inline long rr_sys(long nr, long a, long b, long c, long d, long e, long f) {
#if defined(__x86_64__)
    long ret;
    register long r10 __asm__("r10") = d;
    register long r8 __asm__("r8") = e;
    register long r9 __asm__("r9") = f;
    __asm__ volatile("syscall" : "=a"(ret) : "a"(nr), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9)
                     : "rcx", "r11", "memory");
    return ret;
#elif defined(__aarch64__)
    register long x8 __asm__("x8") = nr;
    register long x0 __asm__("x0") = a;
    register long x1 __asm__("x1") = b;
    register long x2 __asm__("x2") = c;
    register long x3 __asm__("x3") = d;
    register long x4 __asm__("x4") = e;
    register long x5 __asm__("x5") = f;
    __asm__ volatile("svc #0" : "+r"(x0) : "r"(x8), "r"(x1), "r"(x2), "r"(x3), "r"(x4), "r"(x5) : "memory");
    return x0;
#else
    long r = syscall(nr, a, b, c, d, e, f);
    return r < 0 ? -errno : r;
#endif
}
#define RR_SYS(nr, ...) rr_sys_n(nr, __VA_ARGS__, 0, 0, 0, 0, 0, 0)
#define rr_sys_n(nr, a, b, c, d, e, f, ...) rr_sys((long)(nr), (long)(a), (long)(b), (long)(c), (long)(d), (long)(e), (long)(f))

long rr_setsid(void) { return RR_SYS(SYS_setsid, 0); }
int rr_setpgid(pid_t pid, pid_t pgid) { return (int)RR_SYS(SYS_setpgid, pid, pgid); }
int rr_mount(const char *source, const char *target, const char *type, unsigned long flags, const void *data) {
    return (int)RR_SYS(SYS_mount, source, target, type, flags, data);
}
int rr_open(const char *path, int flags) { return (int)RR_SYS(SYS_openat, AT_FDCWD, path, flags, 0); }
long rr_read(int fd, void *buf, size_t len) { return RR_SYS(SYS_read, fd, buf, len); }
long rr_write(int fd, const void *buf, size_t len) { return RR_SYS(SYS_write, fd, buf, len); }
long rr_pwrite(int fd, const void *buf, size_t len, long offset) { return RR_SYS(SYS_pwrite64, fd, buf, len, offset); }
int rr_close(int fd) { return (int)RR_SYS(SYS_close, fd); }
int rr_chdir(const char *path) { return (int)RR_SYS(SYS_chdir, path); }
int rr_execve(const char *path, char *const argv[], char *const envp[]) { return (int)RR_SYS(SYS_execve, path, argv, envp); }
int rr_dup_onto(int fd, int target) { return (int)RR_SYS(SYS_dup3, fd, target, 0); }
long rr_wait4(pid_t pid, int *status, int options) {
    long r;
    do { r = RR_SYS(SYS_wait4, pid, status, options, 0); } while (r == -EINTR);
    return r;
}

struct rr_clone_args {
    uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls,
        set_tid, set_tid_size, cgroup;
};

long rr_clone3(uint64_t flags, int exit_signal, const pid_t *set_tid, size_t set_tid_size) {
    struct rr_clone_args args;
    memset(&args, 0, sizeof(args));
    args.flags = flags;
    args.exit_signal = (uint64_t)exit_signal;
    args.set_tid = (uint64_t)(uintptr_t)set_tid;
    args.set_tid_size = set_tid_size;
    long r = syscall(SYS_clone3, &args, (size_t)80);
    return r < 0 ? -errno : r;
}

long rr_fork_flags(uint64_t flags, int exit_signal) {
    // The legacy clone(2) as a fork with namespace flags: no stack, no TLS, no tid pointers
    // (the same zeros in every architecture's argument order).
    // Raw (no errno): a puppet's forks (the noise testing aid) share the runtime's errno when
    // the init shares its address space.
    return RR_SYS(SYS_clone, (unsigned long)flags | (unsigned long)exit_signal, 0L, 0L, 0L, 0L);
}

int rr_probe_clone3(void) {
    // set_tid_size without set_tid: EINVAL where clone3 knows set_tid (5.5+), E2BIG where its
    // arguments end before it (5.3, 5.4), ENOSYS without clone3 (or under a filter that
    // says so, as Docker's default profile does).
    struct rr_clone_args args;
    memset(&args, 0, sizeof(args));
    args.set_tid_size = 1;
    long r = syscall(SYS_clone3, &args, (size_t)80);
    if (r == 0) _exit(0);
    if (r > 0) { int st; waitpid((pid_t)r, &st, 0); return 2; }
    if (errno == EINVAL) return 2;
    if (errno == E2BIG) return 1;
    if (errno == ENOSYS) return 0;
    return -errno;
}

/* The instructions right after the clone or clone3 syscall, shared by both: the parent
 * (a non-zero result) jumps to 1; the child calls fn(arg), fn and arg held in callee-saved
 * registers (x86-64: r12, r13; aarch64: x19, x20), then exits with SYS_exit (60 / 93). */
#if defined(__x86_64__)
#define RR_CHILD_CALLS_FN_AND_EXITS \
        "test %%rax, %%rax\n\t" "jnz 1f\n\t" "xor %%ebp, %%ebp\n\t" \
        "mov %%r13, %%rdi\n\t" "call *%%r12\n\t" \
        "mov $60, %%eax\n\t" "xor %%edi, %%edi\n\t" "syscall\n\t" "hlt\n\t" "1:\n\t"
#elif defined(__aarch64__)
#define RR_CHILD_CALLS_FN_AND_EXITS \
        "cbnz x0, 1f\n\t" "mov x0, x20\n\t" "blr x19\n\t" \
        "mov x8, #93\n\t" "mov x0, #0\n\t" "svc #0\n\t" "1:\n\t"
#endif

/* clone3 of a task that starts on `stack` and runs fn(arg), then exits (SYS_exit: the thread,
 * or the process when it is alone). The child has no frame to return into, so it must not
 * touch the parent's stack: raw syscall, call fn from registers, exit. */
static long clone3_on_stack(struct rr_clone_args *args, void *fn, void *arg) {
    long ret;
#if defined(__x86_64__)
    register void *r_fn __asm__("r12") = fn;
    register void *r_arg __asm__("r13") = arg;
    __asm__ volatile(
        "syscall\n\t"
        RR_CHILD_CALLS_FN_AND_EXITS
        : "=a"(ret)
        : "a"((long)SYS_clone3), "D"(args), "S"(sizeof(*args)), "r"(r_fn), "r"(r_arg)
        : "rcx", "r11", "memory");
#elif defined(__aarch64__)
    register long x0 __asm__("x0") = (long)args;
    register long x1 __asm__("x1") = (long)sizeof(*args);
    register long x8 __asm__("x8") = SYS_clone3;
    register void *x19 __asm__("x19") = fn;
    register void *x20 __asm__("x20") = arg;
    __asm__ volatile(
        "svc #0\n\t"
        RR_CHILD_CALLS_FN_AND_EXITS
        : "+r"(x0)
        : "r"(x1), "r"(x8), "r"(x19), "r"(x20)
        : "memory", "x30");
    ret = x0;
#else
    (void)fn; (void)arg; (void)args;
    ret = -ENOSYS;
#endif
    return ret;
}

long rr_clone3_thread(uint64_t flags, const pid_t *set_tid, size_t set_tid_size,
                      void *stack, size_t stack_size, void (*fn)(void *), void *arg) {
    struct rr_clone_args args;
    memset(&args, 0, sizeof(args));
    args.flags = flags;
    args.stack = (uint64_t)(uintptr_t)stack;
    args.stack_size = stack_size;
    args.set_tid = (uint64_t)(uintptr_t)set_tid;
    args.set_tid_size = set_tid_size;
    return clone3_on_stack(&args, (void *)fn, arg);
}

long rr_clone3_shared(uint64_t flags, int exit_signal, const pid_t *set_tid, size_t set_tid_size,
                      void *stack, size_t stack_size, void (*fn)(void *), void *arg) {
    struct rr_clone_args args;
    memset(&args, 0, sizeof(args));
    args.flags = flags | CLONE_VM;
    args.exit_signal = (uint64_t)exit_signal;
    args.stack = (uint64_t)(uintptr_t)stack;
    args.stack_size = stack_size;
    args.set_tid = set_tid_size ? (uint64_t)(uintptr_t)set_tid : 0;
    args.set_tid_size = set_tid_size;
    return clone3_on_stack(&args, (void *)fn, arg);
}

struct rr_shared_start { void (*fn)(void *); void *arg; };

static int shared_trampoline(void *p) {
    struct rr_shared_start start = *(struct rr_shared_start *)p;
    start.fn(start.arg);
    return 0;
}

long rr_clone_shared(uint64_t flags, int exit_signal, void *stack, size_t stack_size,
                     void (*fn)(void *), void *arg) {
    // glibc's clone() runs the child on `stack`; fn and arg ride on the top of that stack,
    // which nobody else uses, not on this frame, which may be gone when the child reads them.
    char *top = (char *)stack + stack_size;
    struct rr_shared_start *start = (struct rr_shared_start *)(((uintptr_t)top - sizeof(*start)) & ~(uintptr_t)15);
    start->fn = fn;
    start->arg = arg;
    int r = clone(shared_trampoline, (void *)(((uintptr_t)start - 64) & ~(uintptr_t)15),
                  (int)(flags | CLONE_VM) | exit_signal, start);
    return r < 0 ? -errno : r;
}

long rr_clone_thread(uint64_t flags, void *stack, size_t stack_size, void (*fn)(void *), void *arg) {
    // The legacy clone(2) for kernels without clone3: the child starts with its stack pointer
    // at the top of `stack` (16-byte aligned: a page boundary), the same register discipline
    // as above.
    long ret;
    void *top = (char *)stack + stack_size;
#if defined(__x86_64__)
    register void (*r_fn)(void *) __asm__("r12") = fn;
    register void *r_arg __asm__("r13") = arg;
    register long r10 __asm__("r10") = 0;
    register long r8 __asm__("r8") = 0;
    __asm__ volatile(
        "syscall\n\t"
        RR_CHILD_CALLS_FN_AND_EXITS
        : "=a"(ret)
        : "a"((long)SYS_clone), "D"((long)flags), "S"(top), "d"(0L), "r"(r10), "r"(r8), "r"(r_fn), "r"(r_arg)
        : "rcx", "r11", "memory");
#elif defined(__aarch64__)
    register long x0 __asm__("x0") = (long)flags;
    register long x1 __asm__("x1") = (long)top;
    register long x2 __asm__("x2") = 0;
    register long x3 __asm__("x3") = 0;
    register long x4 __asm__("x4") = 0;
    register long x8 __asm__("x8") = SYS_clone;
    register void (*x19)(void *) __asm__("x19") = fn;
    register void *x20 __asm__("x20") = arg;
    __asm__ volatile(
        "svc #0\n\t"
        RR_CHILD_CALLS_FN_AND_EXITS
        : "+r"(x0)
        : "r"(x1), "r"(x2), "r"(x3), "r"(x4), "r"(x8), "r"(x19), "r"(x20)
        : "memory", "x30");
    ret = x0;
#else
    (void)fn; (void)arg; (void)top; (void)flags;
    ret = -ENOSYS;
#endif
    return ret;
}

void rr_say_failed(const char *label, const char *what, int e) {
    // Child side: one write of a stack buffer, no allocation. strerrorname_np and
    // strerrordesc_np return static strings (glibc 2.32+).
    char buf[512];
    size_t n = 0;
    const char *name = strerrorname_np(e), *desc = strerrordesc_np(e);
    const char *parts[] = { label ? label : "rootless-restore: error: a restored process", ": ", what,
                            " (", name ? name : "errno ?", desc ? ", " : "", desc ? desc : "", ")\n" };
    for (size_t i = 0; i < sizeof(parts) / sizeof(parts[0]); i++) {
        size_t len = strlen(parts[i]);
        if (n + len >= sizeof(buf) - 1) len = sizeof(buf) - 2 - n;
        memcpy(buf + n, parts[i], len);
        n += len;
    }
    if (n == 0 || buf[n - 1] != '\n') buf[n++] = '\n';
    (void)RR_SYS(SYS_write, 2, buf, n);
}

void rr_thread_park(void *unused) {
    (void)unused;
    for (;;) syscall(SYS_pause);
}

// Defined only by a test's LD_PRELOAD allocation guard (weak: 0 here otherwise).
extern volatile int rr_alloc_guard __attribute__((weak));

void rr_child_side_enter(void) {
    if (&rr_alloc_guard) rr_alloc_guard = 1;
    // Swift's crash handler would start swift-backtrace inside the namespace: a faulting
    // child dies of its signal instead, which the coordinator reports.
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = SIG_DFL;
    static const int faults[] = { SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT, SIGTRAP, SIGSYS };
    for (size_t i = 0; i < sizeof(faults) / sizeof(faults[0]); i++) sigaction(faults[i], &sa, NULL);
}

pid_t rr_tcgetpgrp(int fd) {
    pid_t pgrp = 0;
    long r = RR_SYS(SYS_ioctl, fd, TIOCGPGRP, &pgrp);
    return r < 0 ? (pid_t)r : pgrp;
}

int rr_same_address_space(pid_t a, pid_t b) {
    return (int)RR_SYS(SYS_kcmp, a, b, 1 /* KCMP_VM */, 0, 0);
}

int rr_peer_closed(int fd) {
    struct pollfd p = { .fd = fd, .events = POLLOUT };
    struct timespec zero = { 0, 0 };
    long r;
    do { r = RR_SYS(SYS_ppoll, &p, 1, &zero, NULL, _NSIG / 8); } while (r == -EINTR);
    return r > 0 && (p.revents & (POLLHUP | POLLERR)) != 0;
}

static void close_range_or_loop(unsigned first, unsigned last, int cloexec) {
    if (first > last) return;
#ifdef SYS_close_range
    if (RR_SYS(SYS_close_range, first, last, cloexec ? 4u /* CLOSE_RANGE_CLOEXEC */ : 0u) == 0) return;
#endif
    // Before Linux 5.9 (5.11 for CLOEXEC), or refused: one call per possible descriptor.
    // Raw calls: most of them fail (EBADF), and the child side has no errno of its own.
    struct rlimit lim;
    unsigned end = RR_SYS(SYS_prlimit64, 0, RLIMIT_NOFILE, NULL, &lim) == 0 && lim.rlim_cur < 1048576 ? (unsigned)lim.rlim_cur : 1048576;
    if (last < end) end = last + 1;
    for (unsigned fd = first; fd < end; fd++) {
        if (cloexec) (void)RR_SYS(SYS_fcntl, fd, F_SETFD, FD_CLOEXEC); else (void)RR_SYS(SYS_close, fd);
    }
}

void rr_cloexec_from(int first) { close_range_or_loop((unsigned)first, ~0u, 1); }

void rr_close_all_but(int keep) { rr_close_all_but3(keep, -1, -1); }

void rr_close_all_but3(int a, int b, int c) {
    int keep[3] = { a, b, c };
    // Sorted, so that the gaps between them are closed in one call each.
    for (int i = 0; i < 3; i++)
        for (int j = i + 1; j < 3; j++)
            if (keep[j] < keep[i]) { int t = keep[i]; keep[i] = keep[j]; keep[j] = t; }
    unsigned next = 3;
    for (int i = 0; i < 3; i++) {
        if (keep[i] < (int)next) continue;
        close_range_or_loop(next, (unsigned)keep[i] - 1, 0);
        next = (unsigned)keep[i] + 1;
    }
    close_range_or_loop(next, ~0u, 0);
}

// Puppets share the init's address space, and so this guard's flag: the init, which may
// allocate once it leaves the child side, is exempted by its stack (the main one), on which
// no puppet runs (each has its own, PuppetWorld.stacks).
extern volatile uintptr_t rr_alloc_guard_exempt_sp __attribute__((weak));

void rr_child_side_leave(void) {
    if (&rr_alloc_guard_exempt_sp) rr_alloc_guard_exempt_sp = (uintptr_t)__builtin_frame_address(0);
}

int rr_setresuid(uid_t uid) { return (int)RR_SYS(SYS_setresuid, uid, uid, uid); }
int rr_setresgid(gid_t gid) { return (int)RR_SYS(SYS_setresgid, gid, gid, gid); }
int rr_setgroups(size_t count, const gid_t *groups) { return (int)RR_SYS(SYS_setgroups, count, groups); }

int rr_futex_wait(uint32_t *word, uint32_t expected, long timeout_ms) {
    struct timespec ts, *tsp = NULL;
    if (timeout_ms >= 0) {
        ts.tv_sec = timeout_ms / 1000;
        ts.tv_nsec = (timeout_ms % 1000) * 1000000L;
        tsp = &ts;
    }
    long r = RR_SYS(SYS_futex, word, FUTEX_WAIT, expected, tsp, NULL, 0);
    return r < 0 ? (int)r : 0;
}

int rr_futex_wake(uint32_t *word, int count) {
    return (int)RR_SYS(SYS_futex, word, FUTEX_WAKE, count, NULL, NULL, 0);
}

uint32_t rr_atomic_load(const uint32_t *word) { return __atomic_load_n(word, __ATOMIC_ACQUIRE); }
void rr_atomic_store(uint32_t *word, uint32_t value) { __atomic_store_n(word, value, __ATOMIC_RELEASE); }
uint32_t rr_atomic_add(uint32_t *word, uint32_t delta) {
    return __atomic_add_fetch(word, delta, __ATOMIC_ACQ_REL);
}

int rr_prctl_set_pdeathsig(int sig) { return (int)RR_SYS(SYS_prctl, PR_SET_PDEATHSIG, sig); }
int rr_setns(int fd, int nstype) { return syscall(SYS_setns, fd, nstype) < 0 ? -errno : 0; }
int rr_prctl_set_child_subreaper(int on) {
    return (int)RR_SYS(SYS_prctl, PR_SET_CHILD_SUBREAPER, on);
}
int rr_prctl_get_child_subreaper(int *on) {
    return prctl(PR_GET_CHILD_SUBREAPER, on, 0, 0, 0) < 0 ? -errno : 0;
}
int rr_prctl_set_name(const char *name) { return prctl(PR_SET_NAME, name, 0, 0, 0) < 0 ? -errno : 0; }

long rr_getpid(void) { return RR_SYS(SYS_getpid, 0); }
long rr_gettid(void) { return syscall(SYS_gettid); }
long rr_getppid(void) { return syscall(SYS_getppid); }
int rr_kill(pid_t pid, int sig) { return (int)RR_SYS(SYS_kill, pid, sig); }
int rr_exit_thread(int status) {
    syscall(SYS_exit, status);
    for (;;) {}
}

long rr_send_record(int fd, const void *buf, size_t len) {
    long r;
    do { r = RR_SYS(SYS_sendto, fd, buf, len, MSG_NOSIGNAL, NULL, 0); } while (r == -EINTR);
    return r;
}

int rr_enable_passcred(int fd) {
    int on = 1;
    return setsockopt(fd, SOL_SOCKET, SO_PASSCRED, &on, sizeof(on)) < 0 ? -errno : 0;
}

long rr_recv_record(int fd, int interrupt_fd, void *buf, size_t len, pid_t *sender_pid, int timeout_ms) {
    struct pollfd p[2] = { { .fd = fd, .events = POLLIN }, { .fd = interrupt_fd, .events = POLLIN } };
    int pr;
    do { pr = poll(p, interrupt_fd >= 0 ? 2 : 1, timeout_ms); } while (pr < 0 && errno == EINTR);
    if (pr < 0) return -errno;
    if (pr == 0) return -ETIMEDOUT;
    if (interrupt_fd >= 0 && (p[1].revents & POLLIN) && !(p[0].revents & (POLLIN | POLLHUP))) return -ECANCELED;
    struct iovec iov = { .iov_base = buf, .iov_len = len };
    union { struct cmsghdr align; char buf[CMSG_SPACE(sizeof(struct ucred))]; } control;
    struct msghdr msg;
    memset(&msg, 0, sizeof(msg));
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.buf;
    msg.msg_controllen = sizeof(control.buf);
    ssize_t r;
    do { r = recvmsg(fd, &msg, MSG_CMSG_CLOEXEC); } while (r < 0 && errno == EINTR);
    if (r < 0) return -errno;
    *sender_pid = 0;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c != NULL; c = CMSG_NXTHDR(&msg, c)) {
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_CREDENTIALS) {
            struct ucred cred;
            memcpy(&cred, CMSG_DATA(c), sizeof(cred));
            *sender_pid = cred.pid;
        }
    }
    return r;
}

int rr_block_signals(const sigset_t *set, sigset_t *old) {
    return (int)RR_SYS(SYS_rt_sigprocmask, SIG_BLOCK, set, old, _NSIG / 8);
}
void rr_forwarded_signals(sigset_t *set) {
    sigfillset(set);
    static const int kept[] = { SIGFPE, SIGILL, SIGSEGV, SIGBUS, SIGABRT, SIGTRAP, SIGSYS, SIGTTIN, SIGTTOU };
    for (size_t i = 0; i < sizeof(kept) / sizeof(kept[0]); i++) sigdelset(set, kept[i]);
}
int rr_set_signal_mask(const sigset_t *set) {
    return (int)RR_SYS(SYS_rt_sigprocmask, SIG_SETMASK, set, NULL, _NSIG / 8);
}
int rr_reset_signal_dispositions(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = SIG_DFL;
    for (int sig = 1; sig < NSIG; sig++) {
        // glibc's own (32 up to SIGRTMIN) are skipped: refused, they would set errno, which a
        // puppet shares with the runtime when the init shares its memory.
        if (sig == SIGKILL || sig == SIGSTOP || (sig >= 32 && sig < SIGRTMIN)) continue;
        sigaction(sig, &sa, NULL);
    }
    return 0;
}
int rr_changed_signals(int *out, int max) {
    int n = 0;
    for (int sig = 1; sig < NSIG && n < max; sig++) {
        if (sig == SIGKILL || sig == SIGSTOP) continue;
        struct sigaction sa;
        if (sigaction(sig, NULL, &sa) != 0) continue;
        // The signals ignored by default are reset too, whatever their disposition: setting
        // SIG_DFL discards them when pending (blocked). A puppet's pending SIGCHLD from a
        // zombie-to-be made a holding namespace init reap that zombie.
        int ignoredByDefault = sig == SIGCHLD || sig == SIGCONT || sig == SIGURG || sig == SIGWINCH;
        if (sa.sa_handler != SIG_DFL || ignoredByDefault) out[n++] = sig;
    }
    return n;
}
int rr_reset_signals(const int *sigs, int count) {
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = SIG_DFL;
    for (int i = 0; i < count; i++) sigaction(sigs[i], &sa, NULL);
    return 0;
}
int rr_ignore_signal(int sig) {
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = SIG_IGN;
    return sigaction(sig, &sa, NULL) < 0 ? -errno : 0;
}
int rr_sigwait_timeout(const sigset_t *set, siginfo_t *info, long timeout_ms) {
    struct timespec ts = { .tv_sec = timeout_ms / 1000, .tv_nsec = (timeout_ms % 1000) * 1000000L };
    return (int)RR_SYS(SYS_rt_sigtimedwait, set, info, timeout_ms < 0 ? NULL : &ts, _NSIG / 8);
}

int rr_wait_exited_nowait(pid_t pid) {
    siginfo_t info;
    long r;
    do { r = RR_SYS(SYS_waitid, P_PID, pid, &info, WEXITED | WNOWAIT, NULL); } while (r == -EINTR);
    return r < 0 ? (int)r : 0;
}
pid_t rr_siginfo_pid(const siginfo_t *info) { return info->si_pid; }
int rr_siginfo_status(const siginfo_t *info) { return info->si_status; }
int rr_siginfo_code(const siginfo_t *info) { return info->si_code; }

int rr_wifexited(int status) { return WIFEXITED(status); }
int rr_wexitstatus(int status) { return WEXITSTATUS(status); }
int rr_wifsignaled(int status) { return WIFSIGNALED(status); }
int rr_wtermsig(int status) { return WTERMSIG(status); }
int rr_wifstopped(int status) { return WIFSTOPPED(status); }

long rr_getxattr(const char *path, const char *name, void *buf, size_t size) {
    ssize_t r = getxattr(path, name, buf, size);
    return r < 0 ? -errno : r;
}

const long rr_sys_clone = SYS_clone;
const long rr_sys_clone3 = SYS_clone3;
#ifdef SYS_fork
const long rr_sys_fork = SYS_fork;
#else
const long rr_sys_fork = -1;
#endif
#ifdef SYS_vfork
const long rr_sys_vfork = SYS_vfork;
#else
const long rr_sys_vfork = -1;
#endif

int rr_seccomp_install_listener(const void *instructions, unsigned short count, unsigned int extra_flags) {
    struct sock_fprog prog = { .len = count, .filter = (struct sock_filter *)instructions };
    return (int)RR_SYS(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_NEW_LISTENER | extra_flags, &prog);
}

int rr_seccomp_notify_recv(int fd, void *request, size_t size) {
    memset(request, 0, size);
    return (int)RR_SYS(SYS_ioctl, fd, SECCOMP_IOCTL_NOTIF_RECV, request);
}

int rr_seccomp_notify_send(int fd, void *response) {
    return (int)RR_SYS(SYS_ioctl, fd, SECCOMP_IOCTL_NOTIF_SEND, response);
}

int rr_seccomp_notify_sync_wake_up(int fd) {
    // SECCOMP_IOCTL_NOTIF_SET_FLAGS with SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP (Linux 6.6).
    return (int)RR_SYS(SYS_ioctl, fd, _IOW('!', 4, uint64_t), 1UL);
}

int rr_seccomp_filter_flags_known(unsigned int flags) {
    // No program: the kernel checks the flags first (EINVAL for one it does not know), then
    // copies the program (EFAULT). Nothing is installed either way.
    return RR_SYS(SYS_seccomp, SECCOMP_SET_MODE_FILTER, flags, NULL) == -EFAULT;
}

int rr_seccomp_install_filter(const void *instructions, unsigned short count) {
    struct sock_fprog prog = { .len = count, .filter = (struct sock_filter *)instructions };
    long r = RR_SYS(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog);
    return r < 0 ? (int)r : 0;
}

int rr_pipe_cloexec(int fds[2]) {
    return pipe2(fds, O_CLOEXEC) < 0 ? -errno : 0;
}

int rr_memfd(const char *name) {
    int fd = memfd_create(name, MFD_CLOEXEC);
    return fd < 0 ? -errno : fd;
}

int rr_send_fd(int sock, int32_t tag, int fd) {
    struct iovec iov = { .iov_base = &tag, .iov_len = sizeof(tag) };
    union { struct cmsghdr align; char buf[CMSG_SPACE(sizeof(int))]; } control;
    memset(&control, 0, sizeof(control));
    struct msghdr msg;
    memset(&msg, 0, sizeof(msg));
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.buf;
    msg.msg_controllen = sizeof(control.buf);
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &fd, sizeof(int));
    long r;
    do { r = RR_SYS(SYS_sendmsg, sock, &msg, MSG_NOSIGNAL); } while (r == -EINTR);
    return r < 0 ? (int)r : 0;
}

int rr_sleep_ns(long ns) {
    struct timespec ts = { .tv_sec = ns / 1000000000L, .tv_nsec = ns % 1000000000L };
    return (int)RR_SYS(SYS_clock_nanosleep, CLOCK_MONOTONIC, 0, &ts, NULL);
}

int rr_recv_fd(int sock, int32_t *tag) {
    struct iovec iov = { .iov_base = tag, .iov_len = sizeof(*tag) };
    union { struct cmsghdr align; char buf[CMSG_SPACE(sizeof(int))]; } control;
    struct msghdr msg;
    memset(&msg, 0, sizeof(msg));
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.buf;
    msg.msg_controllen = sizeof(control.buf);
    ssize_t r;
    do { r = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC | MSG_DONTWAIT); } while (r < 0 && errno == EINTR);
    if (r < 0) return -errno;
    if (r == 0) return -EPIPE;
    // The kernel drops a passed descriptor it cannot install (RLIMIT_NOFILE) and says so here.
    if (msg.msg_flags & MSG_CTRUNC) return -EMFILE;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c != NULL; c = CMSG_NXTHDR(&msg, c)) {
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
            int fd;
            memcpy(&fd, CMSG_DATA(c), sizeof(int));
            return fd;
        }
    }
    return -EBADF;
}

int rr_read_remote_u64(pid_t pid, uint64_t addr, uint64_t *out) {
    struct iovec local = { .iov_base = out, .iov_len = sizeof(*out) };
    struct iovec remote = { .iov_base = (void *)(uintptr_t)addr, .iov_len = sizeof(*out) };
    ssize_t r = process_vm_readv(pid, &local, 1, &remote, 1, 0);
    if (r < 0) return -errno;
    return r == (ssize_t)sizeof(*out) ? 0 : -EIO;
}

int rr_prctl_set_keepcaps(int on) { return (int)RR_SYS(SYS_prctl, PR_SET_KEEPCAPS, on); }
int rr_prctl_set_dumpable(int on) { return (int)RR_SYS(SYS_prctl, PR_SET_DUMPABLE, on); }
int rr_prctl_set_no_new_privs(void) { return (int)RR_SYS(SYS_prctl, PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); }
int rr_prctl_cap_ambient_clear_all(void) {
    return (int)RR_SYS(SYS_prctl, PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
}
int rr_capset(uint64_t effective, uint64_t permitted, uint64_t inheritable) {
    struct __user_cap_header_struct header = { .version = _LINUX_CAPABILITY_VERSION_3, .pid = 0 };
    struct __user_cap_data_struct data[2] = {
        { .effective = (uint32_t)effective, .permitted = (uint32_t)permitted, .inheritable = (uint32_t)inheritable },
        { .effective = (uint32_t)(effective >> 32), .permitted = (uint32_t)(permitted >> 32), .inheritable = (uint32_t)(inheritable >> 32) },
    };
    return (int)RR_SYS(SYS_capset, &header, data);
}
int rr_prctl_capbset_drop(int cap) { return (int)RR_SYS(SYS_prctl, PR_CAPBSET_DROP, cap, 0, 0, 0); }
int rr_prctl_cap_ambient_raise(int cap) {
    return (int)RR_SYS(SYS_prctl, PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap, 0, 0);
}
int rr_setrlimit(int resource, uint64_t soft, uint64_t hard) {
    struct rlimit limit = { .rlim_cur = (rlim_t)soft, .rlim_max = (rlim_t)hard };
    return (int)RR_SYS(SYS_prlimit64, 0, resource, &limit, NULL);
}

/* ptrace and syscall injection (TreeRecorder: freezing without job control, reading flags
 * /proc does not show). */
#include <sys/ptrace.h>
#include <sys/user.h>
#include <sys/uio.h>
#include <elf.h>
#include <stddef.h>
#include <sys/wait.h>

const long rr_sys_prctl = SYS_prctl;

long rr_ptrace(int request, pid_t tid, uint64_t addr, uint64_t data, uint64_t *peeked) {
    errno = 0;
    long r = ptrace((enum __ptrace_request)request, tid, (void *)(uintptr_t)addr, (void *)(uintptr_t)data);
    if (request == PTRACE_PEEKTEXT || request == PTRACE_PEEKDATA) {
        if (r == -1 && errno != 0) return -errno;
        if (peeked) *peeked = (uint64_t)r;
        return 0;
    }
    return r < 0 ? -errno : r;
}

long rr_wait_traced(pid_t tid, int *status, int nohang) {
    pid_t r = waitpid(tid, status, __WALL | (nohang ? WNOHANG : 0));
    return r < 0 ? -errno : r;
}

int rr_ptrace_event(int status) { return (status >> 16) & 0xff; }

int rr_restart_interrupted_fork(pid_t tid) {
#if defined(__x86_64__)
    errno = 0;
    long nr = ptrace(PTRACE_PEEKUSER, tid, (void *)offsetof(struct user_regs_struct, orig_rax), 0);
    if (nr == -1 && errno) return -errno;
    long ax = ptrace(PTRACE_PEEKUSER, tid, (void *)offsetof(struct user_regs_struct, rax), 0);
    if (ax == -1 && errno) return -errno;
    if (ax != -512 /* ERESTARTSYS */) return 0;
    long cs = ptrace(PTRACE_PEEKUSER, tid, (void *)offsetof(struct user_regs_struct, cs), 0);
    if (cs == -1 && errno) return -errno;
    int forks;
    if (cs == 0x23) {
        /* i386: fork 2, clone 120, vfork 190, clone3 435 */
        forks = nr == 2 || nr == 120 || nr == 190 || nr == 435;
    } else {
        long n = nr & ~0x40000000L; /* x32 numbers carry __X32_SYSCALL_BIT */
        forks = n == SYS_clone || n == SYS_fork || n == SYS_vfork || n == 435 /* clone3 */;
    }
    if (!forks) return 0;
    if (ptrace(PTRACE_POKEUSER, tid, (void *)offsetof(struct user_regs_struct, rax), (void *)-513L /* ERESTARTNOINTR */) != 0) return -errno;
    return 1;
#else
    (void)tid;
    return 0;
#endif
}

long rr_wait_any_stopped(void) {
    siginfo_t info;
    memset(&info, 0, sizeof(info));
    long r;
    do { r = waitid(P_ALL, 0, &info, WSTOPPED | WNOHANG); } while (r < 0 && errno == EINTR);
    if (r < 0) return -errno;
    return info.si_pid;
}

int rr_ptrace_stop_signal(pid_t tid) {
    siginfo_t info;
    if (ptrace(PTRACE_GETSIGINFO, tid, 0, &info) != 0) return -errno;
    /* A seized task's event stops (a group stop: PTRACE_EVENT_STOP) have a siginfo too, with
     * the event in si_code's second byte; a signal-delivery-stop has the signal's own si_code. */
    if (info.si_code > 0 && (info.si_code >> 8) != 0) return -EINVAL;
    return info.si_signo;
}

int rr_pidfd_open(pid_t pid) {
    long r = syscall(SYS_pidfd_open, pid, 0);
    return r < 0 ? -errno : (int)r;
}

#include <sys/epoll.h>
#include <sys/eventfd.h>
int rr_epoll_create(void) {
    int fd = epoll_create1(EPOLL_CLOEXEC);
    return fd < 0 ? -errno : fd;
}
int rr_epoll_add(int epfd, int fd, uint64_t data) {
    struct epoll_event ev = { .events = EPOLLIN, .data.u64 = data };
    return epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) < 0 ? -errno : 0;
}
int rr_epoll_ready(int epfd, uint64_t *data, int max) {
    struct epoll_event ev[64];
    if (max > 64) max = 64;
    int n = epoll_wait(epfd, ev, max, 0);
    if (n < 0) return -errno;
    for (int i = 0; i < n; i++) data[i] = ev[i].data.u64;
    return n;
}

/* The notification receiver (rr_receiver_start). Runs on its own stack in the supervisor's
 * address space: raw system calls, no libc, nothing allocated. */
_Static_assert(sizeof(struct seccomp_notif) == sizeof(((struct rr_received *)0)->notification),
               "struct seccomp_notif is 80 bytes");

static void receiver_publish(struct rr_receiver *r, uint32_t head, int fd, int status) {
    struct rr_received *slot = &r->slots[head % RR_RECEIVER_SLOTS];
    slot->fd = fd;
    slot->status = status;
    __atomic_store_n(&r->head, head + 1, __ATOMIC_RELEASE);
    uint64_t one = 1;
    RR_SYS(SYS_write, r->wakefd, &one, sizeof(one));
}

static void receiver_main(void *p) {
    struct rr_receiver *r = p;
    uint64_t all = ~0ULL;
    RR_SYS(SYS_rt_sigprocmask, SIG_SETMASK, &all, 0, sizeof(all));
    RR_SYS(SYS_prctl, PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
    if (RR_SYS(SYS_getppid, 0) != r->parent) return;
    RR_SYS(SYS_prctl, PR_SET_NAME, "rr-fork-recv", 0, 0, 0);
    /* A session of its own, so a scheduling group of its own where autogroups are on (the
     * default): in its parent's it waits behind the busy supervisor, and the fork it has to
     * receive stays interruptible that much longer (measured: 3 to 5 times the EINTRs). */
    RR_SYS(SYS_setsid, 0);
    struct epoll_event ev[16];
    uint32_t head = r->head;
    for (;;) {
        long n = RR_SYS(SYS_epoll_pwait, r->epfd, ev, 16, -1, 0, 0);
        if (n == -EINTR) continue;
        if (n < 0) {
            receiver_publish(r, head++, -1, (int)-n);
            return;
        }
        for (long i = 0; i < n; i++) {
            int fd = (int)ev[i].data.u64;
            /* A full ring (RR_RECEIVER_SLOTS received, none served yet): wait for the
             * supervisor, a millisecond at a time. Received forks wait killably meanwhile. */
            while (head - __atomic_load_n(&r->tail, __ATOMIC_ACQUIRE) >= RR_RECEIVER_SLOTS) {
                struct timespec ms = { 0, 1000000 };
                RR_SYS(SYS_nanosleep, &ms, 0);
            }
            if (ev[i].events & EPOLLIN) {
                if (r->receive_delay_us > 0) {
                    struct timespec d = { 0, (long)r->receive_delay_us * 1000 };
                    RR_SYS(SYS_nanosleep, &d, 0);
                }
                struct rr_received *slot = &r->slots[head % RR_RECEIVER_SLOTS];
                for (int k = 0; k < 10; k++) slot->notification[k] = 0;
                long e = RR_SYS(SYS_ioctl, fd, SECCOMP_IOCTL_NOTIF_RECV, slot->notification);
                /* ENOENT: the notifying task was interrupted or died before this receive. */
                if (e == -ENOENT || e == -EINTR) continue;
                if (e != 0) RR_SYS(SYS_epoll_ctl, r->epfd, EPOLL_CTL_DEL, fd, 0);
                receiver_publish(r, head++, fd, (int)-e);
            } else if (ev[i].events & (EPOLLHUP | EPOLLERR)) {
                /* Removed here, before the supervisor closes it: a later listener may get
                 * this descriptor's number, and no stale event of this one may reach it. */
                RR_SYS(SYS_epoll_ctl, r->epfd, EPOLL_CTL_DEL, fd, 0);
                receiver_publish(r, head++, fd, RR_RECEIVED_FINISHED);
            }
        }
    }
}

long rr_receiver_start(struct rr_receiver *r, void *stack, size_t stack_size, int receive_delay_us) {
    memset(r, 0, sizeof(*r));
    r->receive_delay_us = receive_delay_us;
    r->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (r->epfd < 0) return -errno;
    r->wakefd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (r->wakefd < 0) {
        int e = errno;
        close(r->epfd);
        return -e;
    }
    r->parent = getpid();
    long pid = rr_clone_thread(CLONE_VM | CLONE_FILES, stack, stack_size, receiver_main, r);
    if (pid < 0) {
        close(r->epfd);
        close(r->wakefd);
    }
    return pid;
}

int rr_receiver_add(struct rr_receiver *r, int fd) {
    struct epoll_event ev = { .events = EPOLLIN, .data.u64 = (uint64_t)(uint32_t)fd };
    return epoll_ctl(r->epfd, EPOLL_CTL_ADD, fd, &ev) < 0 ? -errno : 0;
}

int rr_receiver_take(struct rr_receiver *r, struct rr_received *out) {
    uint32_t tail = r->tail;
    if (tail == __atomic_load_n(&r->head, __ATOMIC_ACQUIRE)) return 0;
    *out = r->slots[tail % RR_RECEIVER_SLOTS];
    __atomic_store_n(&r->tail, tail + 1, __ATOMIC_RELEASE);
    return 1;
}

void rr_receiver_drain_wake(struct rr_receiver *r) {
    uint64_t count;
    while (read(r->wakefd, &count, sizeof(count)) == sizeof(count)) {}
}

long rr_reap_clone_child(pid_t pid, int *status) {
    pid_t r = waitpid(pid, status, __WCLONE | WNOHANG);
    return r < 0 ? -errno : r;
}

long rr_pread_decimal(int fd) {
    char buf[32];
    ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);
    if (n < 0) return -errno;
    long v = 0;
    ssize_t i = 0;
    while (i < n && (buf[i] == ' ' || buf[i] == '\t')) i++;
    if (i == n || buf[i] < '0' || buf[i] > '9') return -EINVAL;
    for (; i < n && buf[i] >= '0' && buf[i] <= '9'; i++) v = v * 10 + (buf[i] - '0');
    return v;
}

int rr_pwrite_decimal(int fd, long value) {
    char buf[24];
    int len = 0;
    unsigned long v = value < 0 ? 0UL - (unsigned long)value : (unsigned long)value;
    do { buf[sizeof(buf) - 1 - len++] = (char)('0' + v % 10); v /= 10; } while (v);
    if (value < 0) buf[sizeof(buf) - 1 - len++] = '-';
    ssize_t n = pwrite(fd, buf + sizeof(buf) - len, (size_t)len, 0);
    if (n < 0) return -errno;
    return n == len ? 0 : -EIO;
}

int rr_pidfd_send_signal(int pidfd, int sig) {
    long r = syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, 0);
    return r < 0 ? -errno : 0;
}

#if defined(__x86_64__)
static int rr_regs_get(pid_t tid, struct user_regs_struct *regs) {
    struct iovec iov = { .iov_base = regs, .iov_len = sizeof(*regs) };
    if (ptrace(PTRACE_GETREGSET, tid, (void *)NT_PRSTATUS, &iov) < 0) return -errno;
    return iov.iov_len == sizeof(*regs) ? 0 : -EXDEV;
}

static int rr_regs_set(pid_t tid, const struct user_regs_struct *regs) {
    struct iovec iov = { .iov_base = (void *)regs, .iov_len = sizeof(*regs) };
    return ptrace(PTRACE_SETREGSET, tid, (void *)NT_PRSTATUS, &iov) < 0 ? -errno : 0;
}

/* Waits for the next stop of tid: its signal (or 0x80|event<<8 style: we return the stop
 * signal and the event separately), -ESRCH when it ended. */
static int rr_next_stop(pid_t tid, int *event) {
    int status = 0;
    for (;;) {
        pid_t r = waitpid(tid, &status, __WALL);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) return -errno;
        if (WIFEXITED(status) || WIFSIGNALED(status)) return -ESRCH;
        if (WIFSTOPPED(status)) { *event = (status >> 16) & 0xff; return WSTOPSIG(status); }
    }
}

int rr_inject_syscall(pid_t tid, uint64_t code, long nr, const uint64_t args[6], int scratch_arg,
                      long *result, uint64_t *scratch) {
    struct user_regs_struct saved, regs;
    int err = rr_regs_get(tid, &saved);
    if (err) return err;
    uint64_t oldmask = 0, allmask = ~(uint64_t)0;
    if (ptrace(PTRACE_GETSIGMASK, tid, (void *)sizeof(oldmask), &oldmask) < 0) return -errno;
    if (ptrace(PTRACE_SETSIGMASK, tid, (void *)sizeof(allmask), &allmask) < 0) return -errno;
    errno = 0;
    long oldcode = ptrace(PTRACE_PEEKTEXT, tid, (void *)(uintptr_t)code, NULL);
    if (oldcode == -1 && errno) { err = -errno; goto mask; }
    /* syscall (0f 05); int3 (cc) */
    long newcode = (long)(((uint64_t)oldcode & ~(uint64_t)0xffffff) | 0xcc050fULL);
    uint64_t where = ((saved.rsp - 128 - 1024) & ~(uint64_t)15);
    errno = 0;
    long oldscratch = 0;
    if (scratch_arg >= 0) {
        oldscratch = ptrace(PTRACE_PEEKDATA, tid, (void *)(uintptr_t)where, NULL);
        if (oldscratch == -1 && errno) { err = -errno; goto mask; }
    }
    if (ptrace(PTRACE_POKETEXT, tid, (void *)(uintptr_t)code, (void *)newcode) < 0) { err = -errno; goto mask; }
    regs = saved;
    uint64_t a[6];
    for (int i = 0; i < 6; i++) a[i] = (i == scratch_arg) ? where : args[i];
    regs.rax = (uint64_t)nr;
    regs.orig_rax = (uint64_t)-1; /* no syscall restart on the way out of this stop */
    regs.rdi = a[0]; regs.rsi = a[1]; regs.rdx = a[2]; regs.r10 = a[3]; regs.r8 = a[4]; regs.r9 = a[5];
    regs.rip = code;
    if ((err = rr_regs_set(tid, &regs))) goto text;
    if (ptrace(PTRACE_CONT, tid, NULL, NULL) < 0) { err = -errno; goto regs; }
    int event = 0;
    int sig = rr_next_stop(tid, &event);
    /* A task of a stopped job (in a group stop) reports that stop again before it runs
     * anything: resume it until the trap after the system call (bounded). */
    for (int i = 0; i < 4 && sig >= 0 && event == PTRACE_EVENT_STOP; i++) {
        struct user_regs_struct at;
        if ((err = rr_regs_get(tid, &at))) goto regs;
        if (at.rip != code) break;
        if (ptrace(PTRACE_CONT, tid, NULL, NULL) < 0) { err = -errno; goto regs; }
        sig = rr_next_stop(tid, &event);
    }
    if (sig < 0) return sig; /* gone: nothing to put back */
    struct user_regs_struct after;
    if ((err = rr_regs_get(tid, &after))) goto regs;
    if (sig != SIGTRAP || event != 0 || after.rip != code + 3) {
        err = -EINTR;
    } else {
        *result = (long)after.rax;
        if (scratch_arg >= 0) {
            errno = 0;
            long v = ptrace(PTRACE_PEEKDATA, tid, (void *)(uintptr_t)where, NULL);
            if (v == -1 && errno) err = -errno; else *scratch = (uint64_t)v;
        }
    }
    if (scratch_arg >= 0) ptrace(PTRACE_POKEDATA, tid, (void *)(uintptr_t)where, (void *)oldscratch);
regs:
    {
        int e = rr_regs_set(tid, &saved);
        if (!err) err = e;
    }
text:
    ptrace(PTRACE_POKETEXT, tid, (void *)(uintptr_t)code, (void *)oldcode);
mask:
    ptrace(PTRACE_SETSIGMASK, tid, (void *)sizeof(oldmask), &oldmask);
    if (err == 0 || err == -EINTR) {
        /* Leave the trap's signal-delivery stop (its SIGTRAP discarded) for an interrupt stop,
         * so that a tracer that dies now detaches a task with nothing pending. */
        ptrace(PTRACE_INTERRUPT, tid, NULL, NULL);
        if (ptrace(PTRACE_CONT, tid, NULL, NULL) == 0) {
            int ev = 0;
            for (int i = 0; i < 4; i++) {
                int sg = rr_next_stop(tid, &ev);
                if (sg < 0) return sg;
                if (ev == PTRACE_EVENT_STOP) break;
                ptrace(PTRACE_CONT, tid, NULL, NULL); /* another trap: discard it */
            }
        }
    }
    return err;
}
#else
int rr_inject_syscall(pid_t tid, uint64_t code, long nr, const uint64_t args[6], int scratch_arg,
                      long *result, uint64_t *scratch) {
    (void)tid; (void)code; (void)nr; (void)args; (void)scratch_arg; (void)result; (void)scratch;
    return -ENOSYS;
}
#endif

static int saved_argc;
static char **saved_argv;

/* glibc calls init_array functions with (argc, argv, envp). */
__attribute__((constructor)) static void rr_capture_argv(int argc, char **argv, char **envp) {
    (void)envp;
    saved_argc = argc;
    saved_argv = argv;
}

int rr_saved_argc(void) { return saved_argc; }
char **rr_saved_argv(void) { return saved_argv; }

int rr_unshare(int flags) { return unshare(flags) == 0 ? 0 : -errno; }

/* Terminals: thin wrappers over the tty ioctls (Swift cannot call variadic ioctl without
   allocating). Each returns 0 or a result, or -errno. */
#include <sys/ioctl.h>
#include <termios.h>

int rr_tty_set_controlling(int fd) { return (int)RR_SYS(SYS_ioctl, fd, TIOCSCTTY, 0); }
int rr_tty_drop_controlling(int fd) { return (int)RR_SYS(SYS_ioctl, fd, TIOCNOTTY, 0); }
int rr_tty_set_foreground(int fd, pid_t pgrp) { return (int)RR_SYS(SYS_ioctl, fd, TIOCSPGRP, &pgrp); }
int rr_pty_unlock(int master) {
    int unlock = 0, n = -1;
    if (ioctl(master, TIOCSPTLCK, &unlock) < 0) return -errno;
    if (ioctl(master, TIOCGPTN, &n) < 0) return -errno;
    return n;
}
int rr_tty_get_winsize(int fd, unsigned short *rows, unsigned short *cols) {
    struct winsize w;
    if (ioctl(fd, TIOCGWINSZ, &w) < 0) return -errno;
    *rows = w.ws_row;
    *cols = w.ws_col;
    return 0;
}
int rr_tty_set_winsize(int fd, unsigned short rows, unsigned short cols) {
    struct winsize w = { .ws_row = rows, .ws_col = cols };
    return ioctl(fd, TIOCSWINSZ, &w) < 0 ? -errno : 0;
}
/* tty_nr / st_rdev major of Unix98 pty slaves (136..143). */
int rr_is_pty_slave_major(unsigned major) { return major >= 136 && major <= 143; }
