// fuzz_check: the property every fuzzed reader must keep on bad input: a failure leaves one line
// in err_msg() naming the file it read.
#ifndef CLIPC_TESTS_FUZZ_CHECK_H
#define CLIPC_TESTS_FUZZ_CHECK_H

#include <string.h>

#include "common/error.h"

#define FUZZ_CHECK_ERROR(name)                                               \
    do {                                                                     \
        CLIPC_ASSERT(strstr(err_msg(), (name)) != NULL);                     \
        CLIPC_ASSERT(strchr(err_msg(), '\n') == NULL);                       \
    } while (0)

#endif
