// Fuzz harness for the CSV/TSV reader of `clipc shards` (convert/csv.c): any file is read or fails
// with one line naming it. The first byte, when it is ',' ';' or '|', is also the separator
// (else tab), so that every separator gets exercised.
#include <stdint.h>
#include <string.h>

#include "convert/convert.h"
#include "convert/sources.h"
#include "fuzz_check.h"
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_temp_file(data, size, ".csv");
    convert_options o;
    convert_options_default(&o);
    o.input = path;
    char sep[2] = {size > 0 && strchr(",;|", data[0]) && data[0] ? (char)data[0] : '\t', '\0'};
    o.csv_separator = sep;
    source_list list = {0};
    if (sources_read_csv(&o, &list) != 0) FUZZ_CHECK_ERROR(path);
    for (int64_t i = 0; i < list.n; i++)
        CLIPC_ASSERT(list.items[i].path && list.items[i].caption && list.items[i].key && list.items[i].label == -1);
    sources_free(&list);
    return 0;
}
