#define _GNU_SOURCE
#include "CErrnoNames.h"
#include <string.h>

const char *rr_errno_name(int e) { return strerrorname_np(e); }
const char *rr_errno_description(int e) { return strerrordesc_np(e); }
