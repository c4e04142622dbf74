// C shim for rootless-restore: syscalls and macros that Swift's Glibc module does not
// expose (clone3, futex, variadic prctl, cmsg). Every function is a thin wrapper with no
// logic; calls return a result or a *negative errno*, never -1 with errno set, so no
// Swift code can clobber errno between the call and the check.
#ifndef C_RESTORE_SHIM_H
#define C_RESTORE_SHIM_H

#include <stdint.h>
#include <stddef.h>
#include <sys/types.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <sys/socket.h>
#include <sys/mman.h>
#include <sched.h>

#ifndef CLONE_NEWUSER
#define CLONE_NEWUSER 0x10000000
#endif
#ifndef CLONE_NEWPID
#define CLONE_NEWPID 0x20000000
#endif
#ifndef CLONE_NEWNS
#define CLONE_NEWNS 0x00020000
#endif
#ifndef CLONE_THREAD
#define CLONE_THREAD 0x00010000
#endif
#ifndef CLONE_VM
#define CLONE_VM 0x00000100
#endif
#ifndef CLONE_FS
#define CLONE_FS 0x00000200
#endif
#ifndef CLONE_FILES
#define CLONE_FILES 0x00000400
#endif
#ifndef CLONE_SIGHAND
#define CLONE_SIGHAND 0x00000800
#endif
#ifndef CLONE_SYSVSEM
#define CLONE_SYSVSEM 0x00040000
#endif
#ifndef CLONE_PARENT
#define CLONE_PARENT 0x00008000
#endif

static const uint64_t RR_CLONE_NEWUSER = CLONE_NEWUSER;
static const uint64_t RR_CLONE_NEWPID = CLONE_NEWPID;
static const uint64_t RR_CLONE_NEWNS = CLONE_NEWNS;
static const uint64_t RR_CLONE_THREAD = CLONE_THREAD;
static const uint64_t RR_CLONE_VM = CLONE_VM;
static const uint64_t RR_CLONE_FS = CLONE_FS;
static const uint64_t RR_CLONE_FILES = CLONE_FILES;
static const uint64_t RR_CLONE_SIGHAND = CLONE_SIGHAND;
static const uint64_t RR_CLONE_SYSVSEM = CLONE_SYSVSEM;
static const uint64_t RR_CLONE_PARENT = CLONE_PARENT;

/// The child side's system calls, made without glibc's errno (raw syscalls: 0 or a result, or
/// -errno). Puppets share one address space and so one thread-local errno: an errno read
/// after a failing libc call could be another puppet's. Every rr_ function a puppet uses
/// works this way.
long rr_setsid(void);
int rr_setpgid(pid_t pid, pid_t pgid);
int rr_mount(const char *source, const char *target, const char *type, unsigned long flags, const void *data);
int rr_open(const char *path, int flags);
long rr_read(int fd, void *buf, size_t len);
long rr_write(int fd, const void *buf, size_t len);
long rr_pwrite(int fd, const void *buf, size_t len, long offset);
int rr_close(int fd);
int rr_chdir(const char *path);
int rr_execve(const char *path, char *const argv[], char *const envp[]);
/// dup3(fd, target, 0): fd must differ from target.
int rr_dup_onto(int fd, int target);
/// wait4(pid, status, options, NULL), again on EINTR: the PID, 0 or -errno.
long rr_wait4(pid_t pid, int *status, int options);

/// clone3() without a new stack: returns like fork() (0 in the child, the child's PID in
/// the parent's namespace), or -errno. `set_tid` is innermost-first, as the kernel wants.
long rr_clone3(uint64_t flags, int exit_signal, const pid_t *set_tid, size_t set_tid_size);

/// The legacy clone(2) used like fork(), with namespace flags: for kernels (or seccomp
/// profiles) without clone3. 0 in the child, the PID, or -errno.
long rr_fork_flags(uint64_t flags, int exit_signal);

/// What this kernel's clone3 offers, probed (no process is created): 2 = clone3 with
/// set_tid (5.5+), 1 = clone3 without set_tid, 0 = no clone3, or -errno when unclear.
int rr_probe_clone3(void);

/// clone3() of a thread with a chosen TID that runs `fn(arg)` on `stack` and then exits the
/// thread. Returns the new TID or -errno.
long rr_clone3_thread(uint64_t flags, const pid_t *set_tid, size_t set_tid_size,
                      void *stack, size_t stack_size, void (*fn)(void *), void *arg);

/// A puppet: a new process that shares the caller's address space (CLONE_VM, like vfork
/// without the wait) and runs `fn(arg)` on `stack`, with its PIDs from `set_tid` (clone3) or
/// as the kernel picks them (legacy clone, for the ns_last_pid dance). No page table or
/// anonymous memory is copied, so creating one costs the same at any depth of a chain.
/// Returns the PID in the caller's namespace, or -errno.
long rr_clone3_shared(uint64_t flags, int exit_signal, const pid_t *set_tid, size_t set_tid_size,
                      void *stack, size_t stack_size, void (*fn)(void *), void *arg);
long rr_clone_shared(uint64_t flags, int exit_signal, void *stack, size_t stack_size,
                     void (*fn)(void *), void *arg);

/// The same with the legacy clone(2) (no set_tid: the TID is what ns_last_pid makes it), for
/// kernels without clone3. Returns the new TID or -errno.
long rr_clone_thread(uint64_t flags, void *stack, size_t stack_size, void (*fn)(void *), void *arg);

/// Child side: "LABEL: WHAT (ENAME, description)" on stderr, for failures no socket can report
/// any more (a stopped process's exec after SIGCONT). No allocation.
void rr_say_failed(const char *label, const char *what, int e);

/// Thread body for restored threads of a holding process: sleeps until the process ends.
void rr_thread_park(void *unused);

/// First call of every child-side process (right after its clone): fault signals get their
/// default action (no crash backtracer in the namespace), and a test's allocation guard
/// (LD_PRELOAD defining rr_alloc_guard) starts counting. `leave`: the init loop, which may
/// allocate, is exempted from the guard (by its stack: puppets share its address space).
void rr_child_side_enter(void);
void rr_child_side_leave(void);
/// Descriptors a restored process must not inherit: mark every fd from `first` up
/// close-on-exec (close_range CLOSE_RANGE_CLOEXEC, or one fcntl each on older kernels);
/// close every fd above 2 but `keep` (-1: none), for processes that hold without exec, and
/// the runtime's init and fork supervisor, which keep theirs.
void rr_cloexec_from(int first);
void rr_close_all_but(int keep);
void rr_close_all_but3(int a, int b, int c);
/// Whether the other end of a connected socket is closed (poll, no wait).
int rr_peer_closed(int fd);
/// tcgetpgrp without errno: the foreground group of terminal `fd`, or -errno.
pid_t rr_tcgetpgrp(int fd);
/// kcmp(KCMP_VM): 0 when the two processes share one address space, > 0 when not, -errno.
int rr_same_address_space(pid_t a, pid_t b);

/// Credentials (glibc declares these only under _GNU_SOURCE). 0 or -errno.
int rr_setresuid(uid_t uid);
int rr_setresgid(gid_t gid);
int rr_setgroups(size_t count, const gid_t *groups);

/// Shared futex word (FUTEX_WAIT/WAKE, not private: the word lives in MAP_SHARED memory).
int rr_futex_wait(uint32_t *word, uint32_t expected, long timeout_ms);
int rr_futex_wake(uint32_t *word, int count);
uint32_t rr_atomic_load(const uint32_t *word);
void rr_atomic_store(uint32_t *word, uint32_t value);
uint32_t rr_atomic_add(uint32_t *word, uint32_t delta);

/// prctl(2) is variadic in glibc, so Swift cannot call it.
int rr_prctl_set_pdeathsig(int sig);
/// setns(2); 0 or -errno.
int rr_setns(int fd, int nstype);
int rr_prctl_set_child_subreaper(int on);
int rr_prctl_get_child_subreaper(int *on);
int rr_prctl_set_name(const char *name);

/// Raw syscalls without glibc wrappers (or whose wrappers keep caches a raw clone breaks).
long rr_getpid(void);
long rr_gettid(void);
long rr_getppid(void);
int rr_kill(pid_t pid, int sig);
/// unshare(2) (not in Swift's Glibc module); 0 or -errno.
int rr_unshare(int flags);
int rr_exit_thread(int status) __attribute__((noreturn));

/// send(2) of one record; recvmsg(2) of one record with the sender's PID as translated by
/// the kernel into the receiver's PID namespace (SO_PASSCRED must be on). Returns bytes or -errno.
long rr_send_record(int fd, const void *buf, size_t len);
/// Waits up to timeout_ms for `fd` or `interrupt_fd` (-1: none); -ETIMEDOUT, or -ECANCELED
/// when interrupt_fd became readable first; 0 at end of file.
long rr_recv_record(int fd, int interrupt_fd, void *buf, size_t len, pid_t *sender_pid, int timeout_ms);
int rr_enable_passcred(int fd);

/// sigprocmask for the whole set; errno-free results.
int rr_block_signals(const sigset_t *set, sigset_t *old);
int rr_set_signal_mask(const sigset_t *set);
/// tini's set: every signal but SIGFPE, SIGILL, SIGSEGV, SIGBUS, SIGABRT, SIGTRAP, SIGSYS,
/// SIGTTIN and SIGTTOU (glibc's sigfillset already leaves out its own two).
void rr_forwarded_signals(sigset_t *set);
int rr_reset_signal_dispositions(void);
/// The signals whose disposition is not SIG_DFL (handled or ignored), into `out` (at most
/// `max`): their count. And back to SIG_DFL for just those: one sigaction each, instead of
/// one for each of the 64 signals in every restored process.
int rr_changed_signals(int *out, int max);
int rr_reset_signals(const int *sigs, int count);
int rr_ignore_signal(int sig);
int rr_sigwait_timeout(const sigset_t *set, siginfo_t *info, long timeout_ms);

/// WEXITED|WNOWAIT wait for one child, without reaping it. Returns 0 or -errno.
int rr_wait_exited_nowait(pid_t pid);
/// siginfo accessors (the union fields are macros in glibc).
pid_t rr_siginfo_pid(const siginfo_t *info);
int rr_siginfo_status(const siginfo_t *info);
int rr_siginfo_code(const siginfo_t *info);

/// waitpid status macros.
int rr_wifexited(int status);
int rr_wexitstatus(int status);
int rr_wifsignaled(int status);
int rr_wtermsig(int status);
int rr_wifstopped(int status);


/// getxattr(2) (sys/xattr.h is not in Swift's Glibc module): bytes read, or -errno.
long rr_getxattr(const char *path, const char *name, void *buf, size_t size);

/// Fork supervision (seccomp user notification). Syscall numbers of this architecture.
extern const long rr_sys_clone, rr_sys_clone3, rr_sys_fork, rr_sys_vfork;
/// seccomp(SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_NEW_LISTENER | extra_flags) with a
/// classic-BPF program of `count` instructions (8 bytes each). Returns the listener fd or -errno.
int rr_seccomp_install_listener(const void *instructions, unsigned short count, unsigned int extra_flags);
/// SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV (Linux 5.19; older headers lack it).
#define RR_SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV (1U << 5)
/// SECCOMP_IOCTL_NOTIF_RECV (the buffer zeroed first) and SECCOMP_IOCTL_NOTIF_SEND, raw: 0 or
/// -errno (libseccomp turns every failure into ECANCELED, and ENOENT, a notifying task
/// interrupted before it was received, must not end the listener).
int rr_seccomp_notify_recv(int fd, void *request, size_t size);
int rr_seccomp_notify_send(int fd, void *response);
/// SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP on a listener (Linux 6.6+): 0 or -errno.
int rr_seccomp_notify_sync_wake_up(int fd);
/// Whether the kernel knows these SECCOMP_SET_MODE_FILTER flags (probed without installing anything).
int rr_seccomp_filter_flags_known(unsigned int flags);
/// seccomp(SECCOMP_SET_MODE_FILTER, 0): a plain filter. 0 or -errno.
int rr_seccomp_install_filter(const void *instructions, unsigned short count);
/// pipe2(fds, O_CLOEXEC) (not in Swift's Glibc module): 0 or -errno.
int rr_pipe_cloexec(int fds[2]);
/// memfd_create(name, MFD_CLOEXEC): fd or -errno.
int rr_memfd(const char *name);
/// Sends `tag` and the descriptor `fd` as one record (SCM_RIGHTS). 0 or -errno.
int rr_send_fd(int sock, int32_t tag, int fd);
/// Sleeps `ns` nanoseconds on CLOCK_MONOTONIC without errno: 0 or -errno (-EINTR on a signal).
int rr_sleep_ns(long ns);
/// Receives one record sent by rr_send_fd: the received fd (CLOEXEC) or -errno; 0-byte EOF:
/// -EPIPE; -EMFILE when the descriptor was dropped (MSG_CTRUNC), with `tag` still read.
int rr_recv_fd(int sock, int32_t *tag);
/// Reads 8 bytes at `addr` in process `pid` (process_vm_readv). 0 or -errno.
int rr_read_remote_u64(pid_t pid, uint64_t addr, uint64_t *out);

/// Process identity (ProcessIdentity.apply): prctl is variadic, setrlimit takes a struct.
/// 0 or -errno.
int rr_prctl_set_keepcaps(int on);
/// PR_SET_DUMPABLE: the flag belongs to the address space, which puppets share.
int rr_prctl_set_dumpable(int on);
int rr_prctl_set_no_new_privs(void);
int rr_prctl_cap_ambient_clear_all(void);
/* Capabilities as raw system calls on the child side (libcap's calls set the errno that
   puppets sharing one address space share). Masks: bit N = capability N. */
int rr_capset(uint64_t effective, uint64_t permitted, uint64_t inheritable);
int rr_prctl_capbset_drop(int cap);
int rr_prctl_cap_ambient_raise(int cap);
int rr_setrlimit(int resource, uint64_t soft, uint64_t hard);

static const int RR_PTRACE_SEIZE = 0x4206;
static const int RR_PTRACE_INTERRUPT = 0x4207;
static const int RR_PTRACE_DETACH = 17;
static const int RR_PTRACE_CONT = 7;
static const int RR_PR_GET_CHILD_SUBREAPER = 37;
/// SYS_prctl of this architecture.
extern const long rr_sys_prctl;

/// ptrace(2) (variadic in glibc): the result, or -errno. For PEEK requests the word read goes
/// to *peeked (the raw syscall's convention), and the result is 0.
long rr_ptrace(int request, pid_t tid, uint64_t addr, uint64_t data, uint64_t *peeked);
/// waitpid(tid, &status, __WALL | (nohang ? WNOHANG : 0)): the tid, 0 (nothing yet) or -errno.
long rr_wait_traced(pid_t tid, int *status, int nohang);
/// At a signal-delivery-stop of the seized task `tid`: if it was inside clone, clone3, fork or
/// vfork (x86-64, x32 or i386 numbers) and that call carries -ERESTARTSYS (a seccomp user
/// notification interrupted before it was received), makes it -ERESTARTNOINTR, what a real
/// fork returns when a signal comes, so the call restarts after the handler instead of failing
/// with EINTR. 1: rewritten, 0: nothing to do (or not x86-64), -errno: a ptrace call failed.
int rr_restart_interrupted_fork(pid_t tid);
/// waitid(P_ALL, 0, WSTOPPED | WNOHANG): a stopped child or tracee (its stop is consumed; exits
/// are left for the reaper), 0 when none, or -errno.
long rr_wait_any_stopped(void);
/// PTRACE_GETSIGINFO's signal number: above 0 at a signal-delivery-stop; -EINVAL at an event
/// stop (a seized task's group stop: the event is in si_code); -errno otherwise.
int rr_ptrace_stop_signal(pid_t tid);
/// The ptrace event of a stop status (status >> 16): PTRACE_EVENT_STOP (128) after
/// PTRACE_INTERRUPT or a group stop.
int rr_ptrace_event(int status);
/// pidfd_open(pid, 0) (CLOEXEC): fd or -errno.
int rr_pidfd_open(pid_t pid);
/// epoll_create1(EPOLL_CLOEXEC): fd or -errno. (struct epoll_event is packed: kept in C.)
int rr_epoll_create(void);
/// epoll_ctl(EPOLL_CTL_ADD, fd, EPOLLIN) with `data`: 0 or -errno.
int rr_epoll_add(int epfd, int fd, uint64_t data);
/// epoll_wait without waiting: the data of up to `max` (at most 64) ready fds; count or -errno.
int rr_epoll_ready(int epfd, uint64_t *data, int max);
/// pidfd_send_signal(fd, sig, NULL, 0): 0 or -errno.
int rr_pidfd_send_signal(int pidfd, int sig);

/// The fork supervisor's notification receiver: a process of its own (clone with CLONE_VM |
/// CLONE_FILES, exit signal 0, so that the init's wait4 never sees it) that does nothing but
/// wait on the listeners (an epoll set) and take each notification the moment it is queued
/// (SECCOMP_IOCTL_NOTIF_RECV): from then on the fork waits killably (WAIT_KILLABLE_RECV), so a
/// SIGCHLD can no longer fail it with EINTR. Raw system calls only (it shares the supervisor's
/// memory, errno and TLS). It writes each one into a ring the supervisor reads, and wakes the
/// supervisor through an eventfd.
#define RR_RECEIVER_SLOTS 256
/// `status`: 0 a notification (in `notification`, a struct seccomp_notif); RR_RECEIVED_FINISHED
/// the listener hung up (no task uses its filter any more; removed from the set); otherwise the
/// errno of a failed receive (the listener is removed from the set too).
#define RR_RECEIVED_FINISHED (-1)
struct rr_received {
    int32_t fd;
    int32_t status;
    uint64_t notification[10];
};
struct rr_receiver {
    /* head: written by the receiver only; tail: by the supervisor only. */
    uint32_t head, tail;
    int32_t epfd, wakefd, parent;
    /* Testing aid: microseconds the receiver waits before each receive (0: none). */
    int32_t receive_delay_us;
    struct rr_received slots[RR_RECEIVER_SLOTS];
};
/// Creates the receiver's epoll set and eventfd and starts it on `stack`. Its PID is the next
/// one the namespace hands out (the caller sets ns_last_pid). Returns its PID or -errno.
long rr_receiver_start(struct rr_receiver *r, void *stack, size_t stack_size, int receive_delay_us);
/// Adds a listener to the receiver's set: 0 or -errno.
int rr_receiver_add(struct rr_receiver *r, int fd);
/// Takes the oldest received entry into *out: 1, or 0 when there is none. Never blocks.
int rr_receiver_take(struct rr_receiver *r, struct rr_received *out);
/// Empties the receiver's eventfd (non-blocking).
void rr_receiver_drain_wake(struct rr_receiver *r);
/// waitpid(pid, status, __WCLONE | WNOHANG): reaps a child whose exit signal is not SIGCHLD
/// (the receiver). The pid, 0 (not ended yet) or -errno.
long rr_reap_clone_child(pid_t pid, int *status);
/// A decimal integer read from offset 0 of an open file (ns_last_pid, kept open): >= 0, or -errno.
long rr_pread_decimal(int fd);
/// Writes `value` in decimal at offset 0 of an open file with one pwrite: 0 or -errno.
int rr_pwrite_decimal(int fd, long value);

/// Runs one system call `nr` with `args` inside the ptrace-stopped task `tid` (this thread is
/// its tracer), the way CRIU's compel does: all its signals blocked, `syscall; int3` written
/// at `code` (the start of an executable mapping of the task), its registers set, continued
/// until the int3 trap; then memory, registers and signal mask are put back and the task is
/// returned to a PTRACE_EVENT_STOP. If `scratch_arg` is 0...5, that argument is replaced by
/// the address of 8 bytes below the task's stack red zone (saved and restored), whose content
/// afterwards goes to *scratch. The call's return value goes to *result.
/// Returns 0, -errno of a ptrace step, -EXDEV for a task that is not x86_64 (a 32-bit one), or
/// -ENOSYS on other architectures. -ESRCH: the task ended; -EINTR: the task stopped for
/// something else (SIGSTOP/SIGKILL, which cannot be blocked) and was put back.
int rr_inject_syscall(pid_t tid, uint64_t code, long nr, const uint64_t args[6], int scratch_arg,
                      long *result, uint64_t *scratch);

/* argc/argv as the C runtime passed them to main, captured by an ELF constructor. Swift's
 * CommandLine reads /proc/self/cmdline on Linux, which is missing without /proc. */
int rr_saved_argc(void);
char **rr_saved_argv(void);

/* Terminals (ioctl wrappers; 0 or a result, or -errno). */
int rr_tty_set_controlling(int fd);
int rr_tty_drop_controlling(int fd);
int rr_tty_set_foreground(int fd, pid_t pgrp);
/* Unlocks a pty master and returns its slave's number. */
int rr_pty_unlock(int master);
int rr_tty_get_winsize(int fd, unsigned short *rows, unsigned short *cols);
int rr_tty_set_winsize(int fd, unsigned short rows, unsigned short cols);
int rr_is_pty_slave_major(unsigned major);

#endif
