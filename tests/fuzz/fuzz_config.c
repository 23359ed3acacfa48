// Fuzz harness for the model config reader (model/config.c): any text parses or fails with one
// line naming its source; a parsed config written back and parsed again gives the same JSON.
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_check.h"
#include "model/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *text = xmalloc(size + 1);
    memcpy(text, data, size);
    text[size] = '\0';
    clip_config cfg, again;
    if (clip_config_parse(text, "fuzz.json", &cfg) != 0) {
        FUZZ_CHECK_ERROR("fuzz.json");
    } else {
        char *json = clip_config_to_json(&cfg);
        CLIPC_ASSERT(clip_config_parse(json, "fuzz.json", &again) == 0);
        char *json2 = clip_config_to_json(&again);
        CLIPC_ASSERT(strcmp(json, json2) == 0);
        free(json);
        free(json2);
    }
    free(text);
    return 0;
}
