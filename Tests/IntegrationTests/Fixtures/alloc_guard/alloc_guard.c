/*
 * LD_PRELOAD allocation guard for ChildSideTests. It defines rr_alloc_guard, which the
 * runtime's C shim references weakly and sets in every child right after its clone
 * (rr_child_side_enter) and clears in the one child allowed to allocate (the init loop). Any
 * malloc-family call while it is set is a broken rule: say so and end the process with 86.
 *
 *   cc -shared -fPIC -O1 -o alloc_guard.so alloc_guard.c
 */
#define _GNU_SOURCE
#include <stddef.h>
#include <string.h>
#include <unistd.h>

volatile int rr_alloc_guard;

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

void *malloc(size_t n) { if (rr_alloc_guard) caught("malloc"); return __libc_malloc(n); }
void *calloc(size_t n, size_t m) { if (rr_alloc_guard) caught("calloc"); return __libc_calloc(n, m); }
void *realloc(void *p, size_t n) { if (rr_alloc_guard) caught("realloc"); return __libc_realloc(p, n); }
void free(void *p) { if (rr_alloc_guard && p) caught("free"); __libc_free(p); }
void *memalign(size_t a, size_t n) { if (rr_alloc_guard) caught("memalign"); return __libc_memalign(a, n); }
void *aligned_alloc(size_t a, size_t n) { if (rr_alloc_guard) caught("aligned_alloc"); return __libc_memalign(a, n); }
int posix_memalign(void **out, size_t a, size_t n) {
    if (rr_alloc_guard) caught("posix_memalign");
    void *p = __libc_memalign(a, n);
    if (!p) return 12;
    *out = p;
    return 0;
}
