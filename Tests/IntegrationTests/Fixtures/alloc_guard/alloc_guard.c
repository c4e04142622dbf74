/*
 * LD_PRELOAD allocation guard for ChildSideTests. It defines rr_alloc_guard, which the
 * runtime's C shim references weakly and sets in every child right after its clone
 * (rr_child_side_enter); the one child allowed to allocate (the init loop) is exempted. Any
 * malloc-family call while it is set is a broken rule: say so and end the process with 86.
 *
 *   cc -shared -fPIC -O1 -o alloc_guard.so alloc_guard.c
 */
#define _GNU_SOURCE
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

volatile int rr_alloc_guard;
/* Puppets share one address space (CLONE_VM), so the flag is the same for all of them; the
 * init, which may allocate once released, records its stack pointer here instead of clearing
 * the flag, and only calls made on that stack (the main one) are let through. */
volatile uintptr_t rr_alloc_guard_exempt_sp;

static int guarded(void) {
    if (!rr_alloc_guard) return 0;
    uintptr_t e = rr_alloc_guard_exempt_sp;
    if (!e) return 1;
    uintptr_t sp = (uintptr_t)__builtin_frame_address(0);
    return (sp > e ? sp - e : e - sp) > ((uintptr_t)32 << 20);
}

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);
extern void __libc_free(void *);

static void caught(const char *what) {
    static const char head[] = "alloc_guard: a puppet called ";
    static const char tail[] = " between clone and exec\n";
    (void)!write(2, head, sizeof(head) - 1);
    (void)!write(2, what, strlen(what));
    (void)!write(2, tail, sizeof(tail) - 1);
    _exit(86);
}

void *malloc(size_t n) { if (guarded()) caught("malloc"); return __libc_malloc(n); }
void *calloc(size_t n, size_t m) { if (guarded()) caught("calloc"); return __libc_calloc(n, m); }
void *realloc(void *p, size_t n) { if (guarded()) caught("realloc"); return __libc_realloc(p, n); }
void free(void *p) { if (guarded() && p) caught("free"); __libc_free(p); }
void *memalign(size_t a, size_t n) { if (guarded()) caught("memalign"); return __libc_memalign(a, n); }
void *aligned_alloc(size_t a, size_t n) { if (guarded()) caught("aligned_alloc"); return __libc_memalign(a, n); }
int posix_memalign(void **out, size_t a, size_t n) {
    if (guarded()) caught("posix_memalign");
    void *p = __libc_memalign(a, n);
    if (!p) return 12;
    *out = p;
    return 0;
}
