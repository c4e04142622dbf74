// errno names and descriptions from the C library (glibc >= 2.32), for RestoreModel's
// messages: a lookup, no system call. NULL for a number the library does not know.
#ifndef C_ERRNO_NAMES_H
#define C_ERRNO_NAMES_H

const char *rr_errno_name(int e);
const char *rr_errno_description(int e);

#endif
