// dladdr for the static-pie release binary (scripts/setup.sh links it with --wrap=dladdr).
//
// Static glibc's dladdr knows no object for addresses of the executable itself, so the Swift
// runtime's start-up (it looks for swift-backtrace next to "the runtime") falls back to
// readlink("/proc/self/exe") and aborts where /proc is not mounted, before `main` can say
// "/proc is not mounted" and exit 77. For an address inside the executable this answers what a
// dynamic dladdr would: the executable's path as exec'd (AT_EXECFN) and its load address.
// Builds without --wrap (debug, tests) never call it.
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stddef.h>
#include <sys/auxv.h>

// Defined by the linker: the first byte of the executable's image and the end of its data.
extern const char __executable_start[] __attribute__((weak));
extern const char _end[] __attribute__((weak));
// --wrap=dladdr binds this to the C library's dladdr; weak, so that other links need none.
extern int __real_dladdr(const void *address, Dl_info *info) __attribute__((weak));

int __wrap_dladdr(const void *address, Dl_info *info) {
    if (__real_dladdr != NULL && __real_dladdr(address, info) != 0) return 1;
    const char *start = __executable_start, *end = _end;
    const char *name = (const char *)getauxval(AT_EXECFN);
    if (start == NULL || end == NULL || name == NULL) return 0;
    if ((const char *)address < start || (const char *)address >= end) return 0;
    info->dli_fname = name;
    info->dli_fbase = (void *)start;
    info->dli_sname = NULL;
    info->dli_saddr = NULL;
    return 1;
}
