// Issue 14, item 10: the design that would close the EINTR window of pinned forks, tried
// stand-alone (not part of the runtime; docs/performance.md, "Closing the EINTR window").
//
// A fork waiting in a seccomp user notification that has not been received yet is woken by a
// signal with -ERESTARTSYS; under a handler without SA_RESTART the kernel then returns EINTR,
// which a real fork never does (it restarts with -ERESTARTNOINTR). With the forker ptraced, the
// interrupting signal stops it at its signal-delivery-stop *before* the kernel decides between
// EINTR and a restart; the tracer changes the pending -ERESTARTSYS of the clone into
// -ERESTARTNOINTR and lets the signal through: the handler runs, and the fork restarts.
//
//   cc -O1 -o seccomp-eintr-restart seccomp-eintr-restart.c
//   ./seccomp-eintr-restart 0    # a slow receiver, no fix-up: many forks fail with EINTR
//   ./seccomp-eintr-restart 1    # the same with the fix-up: none does
//
// 300 forks, each child exiting within 2 ms, the receiver waiting 0.3 ms before each receive;
// as an ordinary user (Yama ptrace_scope 1: the tracer is the forker's parent):
//   fixup=0 forks=300 eintr=168..180
//   fixup=1 forks=300 eintr=0   (176..184 interrupted forks restarted)
// Not handled here, as the runtime would have to: clone3/fork/vfork and the i386 numbers, a
// forker that is not the tracer's child (PTRACE_SEIZE needs CAP_SYS_PTRACE in the namespace,
// which the runtime's init has), attaching before the forker's first fork, and ptrace's costs
// (every signal of a traced forker passes through the tracer; a traced forker cannot be traced
// by gdb, strace or `record --freeze` until it is detached; it shows a TracerPid, and a stop
// of it reads "t (tracing stop)" instead of "T (stopped)" in /proc, even under PTRACE_LISTEN).
#define _GNU_SOURCE
#include <errno.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <poll.h>

static volatile sig_atomic_t ended;
static void on_child(int s) { (void)s; ended++; }

static int send_fd(int sock, int fd) { char c = 0; struct iovec io = {&c, 1}; char buf[CMSG_SPACE(sizeof(int))]; struct msghdr m = {0};
  m.msg_iov = &io; m.msg_iovlen = 1; m.msg_control = buf; m.msg_controllen = sizeof buf; struct cmsghdr *h = CMSG_FIRSTHDR(&m);
  h->cmsg_level = SOL_SOCKET; h->cmsg_type = SCM_RIGHTS; h->cmsg_len = CMSG_LEN(sizeof(int)); memcpy(CMSG_DATA(h), &fd, sizeof fd); return sendmsg(sock, &m, 0); }
static int recv_fd(int sock) { char c; struct iovec io = {&c, 1}; char buf[CMSG_SPACE(sizeof(int))]; struct msghdr m = {0};
  m.msg_iov = &io; m.msg_iovlen = 1; m.msg_control = buf; m.msg_controllen = sizeof buf; if (recvmsg(sock, &m, 0) < 0) return -1;
  int fd; memcpy(&fd, CMSG_DATA(CMSG_FIRSTHDR(&m)), sizeof fd); return fd; }

int main(int argc, char **argv) {
  int fixup = argc > 1 && atoi(argv[1]);
  int n = 300;
  int sv[2]; socketpair(AF_UNIX, SOCK_STREAM, 0, sv);
  pid_t forker = fork();
  if (forker == 0) {
    struct sigaction sa = {0}; sa.sa_handler = on_child; sigaction(SIGCHLD, &sa, NULL);  // no SA_RESTART
    struct sock_filter f[] = {
      BPF_STMT(BPF_LD|BPF_W|BPF_ABS, offsetof(struct seccomp_data, nr)),
      BPF_JUMP(BPF_JMP|BPF_JEQ|BPF_K, SYS_clone, 0, 1),
      BPF_STMT(BPF_RET|BPF_K, SECCOMP_RET_USER_NOTIF),
      BPF_STMT(BPF_RET|BPF_K, SECCOMP_RET_ALLOW) };
    struct sock_fprog p = { 4, f };
    prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
    int lfd = syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_NEW_LISTENER, &p);
    send_fd(sv[1], lfd); close(lfd);
    char go; read(sv[1], &go, 1);   // the tracer has seized us
    int eintr = 0, done = 0;
    while (done < n) {
      pid_t c = fork();
      if (c == 0) { struct timespec t = {0, (rand() % 2000) * 1000}; nanosleep(&t, NULL); _exit(0); }
      if (c < 0) { if (errno == EINTR) eintr++; else { perror("fork"); } }
      else done++;
      while (waitpid(-1, NULL, WNOHANG) > 0) {}
    }
    while (wait(NULL) > 0) {}
    printf("fixup=%d forks=%d eintr=%d\n", fixup, done, eintr); fflush(stdout);
    _exit(0);
  }
  int lfd = recv_fd(sv[0]);
  if (ptrace(PTRACE_SEIZE, forker, 0, 0) != 0) { perror("seize"); return 1; }
  write(sv[0], "g", 1);
  struct seccomp_notif *req = calloc(1, 4096); struct seccomp_notif_resp *resp = calloc(1, 4096);
  int fixed = 0;
  for (;;) {
    // A slow receiver: let the forker wait a while unreceived, so SIGCHLDs interrupt it.
    struct pollfd pfd = { lfd, POLLIN, 0 };
    if (poll(&pfd, 1, 0) > 0 && (pfd.revents & POLLIN)) {
      struct timespec t = {0, 300000}; nanosleep(&t, NULL);
      memset(req, 0, sizeof *req);
      if (ioctl(lfd, SECCOMP_IOCTL_NOTIF_RECV, req) == 0) {
        memset(resp, 0, sizeof *resp); resp->id = req->id; resp->flags = SECCOMP_USER_NOTIF_FLAG_CONTINUE;
        ioctl(lfd, SECCOMP_IOCTL_NOTIF_SEND, resp);
      }
    }
    int st; pid_t w = waitpid(forker, &st, __WALL | WNOHANG);
    if (w == 0) { struct timespec t = {0, 20000}; nanosleep(&t, NULL); continue; }
    if (w < 0 || WIFEXITED(st) || WIFSIGNALED(st)) break;
    if (WIFSTOPPED(st)) {
      int sig = WSTOPSIG(st);
      if (st >> 16 == PTRACE_EVENT_STOP) { ptrace(PTRACE_LISTEN, forker, 0, 0); continue; }   // group-stop
      struct user_regs_struct r; ptrace(PTRACE_GETREGS, forker, 0, &r);
      if (fixup && (long)r.rax == -512 /* ERESTARTSYS */ && r.orig_rax == SYS_clone) {
        r.rax = -513; /* ERESTARTNOINTR: restart after the handler, as a real fork */
        ptrace(PTRACE_SETREGS, forker, 0, &r); fixed++;
      }
      ptrace(PTRACE_CONT, forker, 0, sig);
    }
  }
  fprintf(stderr, "tracer: %d interrupted forks turned into restarts\n", fixed);
  return 0;
}
