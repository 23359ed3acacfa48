// Tests of --pretrained beyond safetensors (model/weights.h, model/pretrained.h, shim/torch_file.h),
// with every file made here by libtorch, no download:
// - one tiny model's weights written as torch.save's state dict (open_clip_pytorch_model.bin),
//   as OpenCLIP's epoch_N.pt ("state_dict" with DDP's "module." keys) and as a TorchScript
//   archive named as OpenAI's (with its three non-weight buffers) load bit-identical to the same
//   weights in safetensors; the TorchScript archive implies QuickGELU;
// - OpenCLIP's tags resolve through a fake Hugging Face hub cache (HF_HOME) and OpenCLIP's own
//   download folder (HOME/.cache/clip), with the tag's mean and std; a tag in no cache names the
//   paths looked at and what OpenCLIP would download; an unknown tag lists the model's tags;
// - what Python's pickle writes and libtorch's unpickler alone cannot read goes through
//   shim/pickle_rewrite.hpp: an OrderedDict with _metadata (Python's model.state_dict()), APPEND
//   and SETITEM, as byte strings, and two files written by Python's torch.save
//   (tests/data/make_torch_pickles.py: a state dict and an epoch_N.pt with "module." keys and
//   AdamW's state) whose values are checked bit for bit;
// - bad files give one line naming the file: a truncated .bin, a zip that holds no state dict,
//   a TorchScript archive of another model, a pickle cut inside an opcode, without STOP or with
//   an opcode Python never writes, the legacy (non-zip) format.
// The configs are tiny but named as OpenCLIP's models (ViT-B-32.json), since tags belong to a name.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/error.h"
#include "model/clip.h"
#include "model/pretrained.h"
#include "session/session.h"
#include "shim/torch_file.h"
#include "tmpdir.h"

static const char TINY[] =
    "{\"embed_dim\": 16, \"vision_cfg\": {\"image_size\": 16, \"layers\": 1, \"width\": 32, \"head_width\": 16, "
    "\"patch_size\": 8}, \"text_cfg\": {\"context_length\": 8, \"vocab_size\": 64, \"width\": 32, \"heads\": 2, "
    "\"layers\": 1}}";

static const char *data_dir;  // tests/data: the files Python wrote
static char config_b32[512], config_l14[512];
static clip_model *source;      // the weights every file holds (seed 1)
static torch_file_tensor *items;
static float **values;
static char st_path[512], bin_path[512], ckpt_path[512], script_path[512];

static void write_file(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, n, f), n);
    assert_int_equal(fclose(f), 0);
}

static void copy_file(const char *from, const char *to) {
    FILE *f = fopen(from, "rb");
    assert_non_null(f);
    static char buf[1 << 16];
    FILE *out = fopen(to, "wb");
    for (size_t n; (n = fread(buf, 1, sizeof buf, f)) > 0;) assert_int_equal(fwrite(buf, 1, n, out), n);
    fclose(f);
    assert_int_equal(fclose(out), 0);
}

static void mkdirs(const char *path) {
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "mkdir -p '%s'", path);
    assert_int_equal(system(cmd), 0);
}

// The source model's parameters as torch_file tensors, plus OpenAI's three integer buffers when asked.
static int source_items(bool openai_extras) {
    int n = source->params.n;
    for (int i = 0; i < n; i++) {
        const param *p = &source->params.items[i];
        torch_file_tensor *t = &items[i];
        t->name = p->name, t->dtype = "F32", t->ndim = tensor_shape(p->value, t->shape);
        t->data = values[i], t->nbytes = (size_t)tensor_numel(p->value) * sizeof(float);
    }
    static const int64_t extras[3] = {16, 8, 64};
    static const char *names[3] = {"input_resolution", "context_length", "vocab_size"};
    for (int e = 0; openai_extras && e < 3; e++)
        items[n++] = (torch_file_tensor){.name = names[e], .dtype = "I64", .ndim = 0, .data = &extras[e], .nbytes = 8};
    return n;
}

static int setup(void **state) {
    if (tmpdir_setup(state) != 0) return -1;
    snprintf(config_b32, sizeof config_b32, "%s", tmpdir_path("ViT-B-32.json"));
    snprintf(config_l14, sizeof config_l14, "%s", tmpdir_path("ViT-L-14.json"));
    write_file(config_b32, TINY, strlen(TINY));
    write_file(config_l14, TINY, strlen(TINY));
    clip_config cfg;
    if (clip_config_load(config_b32, &cfg) != 0) return -1;
    source = clip_model_init(&cfg, 1);
    int n = source->params.n;
    items = calloc((size_t)n + 3, sizeof *items);
    values = calloc((size_t)n, sizeof *values);
    for (int i = 0; i < n; i++) {
        const param *p = &source->params.items[i];
        size_t bytes = (size_t)tensor_numel(p->value) * sizeof(float);
        values[i] = malloc(bytes);
        if (tensor_to_host(p->value, values[i], bytes) != 0) return -1;
    }
    snprintf(st_path, sizeof st_path, "%s", tmpdir_path("model.safetensors"));
    snprintf(bin_path, sizeof bin_path, "%s", tmpdir_path("open_clip_pytorch_model.bin"));
    snprintf(ckpt_path, sizeof ckpt_path, "%s", tmpdir_path("epoch_1.pt"));
    snprintf(script_path, sizeof script_path, "%s", tmpdir_path("ViT-B-32.pt"));
    int rc = clip_model_save(source, st_path, NULL);
    if (rc == 0) rc = torch_file_write(bin_path, TORCH_FILE_WRITE_STATE_DICT, items, source_items(false));
    if (rc == 0) rc = torch_file_write(ckpt_path, TORCH_FILE_WRITE_CHECKPOINT, items, source_items(false));
    if (rc == 0) rc = torch_file_write(script_path, TORCH_FILE_WRITE_SCRIPT, items, source_items(true));
    if (rc != 0) fprintf(stderr, "%s\n", err_msg());
    return rc;
}

static int teardown(void **state) {
    for (int i = 0; i < source->params.n; i++) free(values[i]);
    free(values), free(items);
    clip_model_free(source);
    return tmpdir_teardown(state);
}

// A session of the tiny model (from another seed) loading pretrained; 0 or -1 with err_msg().
static int open_session(const char *config, const char *pretrained, session *s) {
    session_options o = {.model = config, .pretrained = pretrained, .device = "cpu", .threads = 1, .seed = 7};
    return session_open(&o, s);
}

static void assert_source_weights(const session *s) {
    assert_int_equal(s->model->params.n, source->params.n);
    for (int i = 0; i < source->params.n; i++) {
        const param *p = &s->model->params.items[i];
        size_t bytes = (size_t)tensor_numel(p->value) * sizeof(float);
        float *got = malloc(bytes);
        assert_int_equal(tensor_to_host(p->value, got, bytes), 0);
        if (memcmp(got, values[i], bytes) != 0) fail_msg("%s differs from the safetensors weights", p->name);
        free(got);
    }
}

static void assert_loads(const char *config, const char *pretrained, bool quick_gelu) {
    session s;
    if (open_session(config, pretrained, &s) != 0) fail_msg("%s: %s", pretrained, err_msg());
    assert_source_weights(&s);
    assert_int_equal(s.cfg.quick_gelu, quick_gelu);
    session_close(&s);
}

static void assert_error(const char *config, const char *pretrained, const char *part1, const char *part2) {
    session s;
    assert_int_equal(open_session(config, pretrained, &s), -1);
    const char *msg = err_msg();
    if (!strstr(msg, part1) || (part2 && !strstr(msg, part2)) || strchr(msg, '\n'))
        fail_msg("unexpected message: %s", msg);
}

// A torch.save zip file, name, holding n bytes of pickle: refused with message.
static void expect_pickle_error(const char *name, const char *bytes, size_t n, const char *message) {
    const char *path = tmpdir_path(name);
    assert_int_equal(torch_file_write_pickle(path, bytes, n), 0);
    assert_error(config_b32, path, path, message);
}

static void test_formats_load_as_safetensors(void **state) {
    (void)state;
    assert_loads(config_b32, st_path, false);
    assert_loads(config_b32, bin_path, false);
    assert_loads(config_b32, ckpt_path, false);
    assert_loads(config_b32, script_path, true);  // OpenAI's: QuickGELU
}

static void test_pytorch_files_need_model(void **state) {
    (void)state;
    session_options o = {.pretrained = bin_path, .device = "cpu", .threads = 1};
    session s;
    assert_int_equal(session_open(&o, &s), -1);
    assert_non_null(strstr(err_msg(), bin_path));
    assert_non_null(strstr(err_msg(), "--model"));
}

static void set_caches(const char *name) {
    setenv("HOME", tmpdir_path(name), 1);
    char hf[600];
    snprintf(hf, sizeof hf, "%s/hf", tmpdir_path(name));
    setenv("HF_HOME", hf, 1);
    unsetenv("HF_HUB_CACHE"), unsetenv("HUGGINGFACE_HUB_CACHE"), unsetenv("XDG_CACHE_HOME");
}

static void test_tags_from_caches(void **state) {
    (void)state;
    set_caches("cache");
    const char *repo = tmpdir_path("cache/hf/hub/models--laion--CLIP-ViT-B-32-laion2B-s34B-b79K");
    char dir[600], path[700];
    snprintf(dir, sizeof dir, "%s/snapshots/0123abcd", repo);
    mkdirs(dir);
    snprintf(path, sizeof path, "%s/open_clip_pytorch_model.bin", dir);
    copy_file(bin_path, path);
    snprintf(dir, sizeof dir, "%s/refs", repo);
    mkdirs(dir);
    snprintf(dir, sizeof dir, "%s/refs/main", repo);
    write_file(dir, "0123abcd", 8);
    assert_loads(config_b32, "laion2b_s34b_b79k", false);
    assert_loads(config_b32, "LAION2B-s34b-b79k", false);  // OpenCLIP's _clean_tag

    mkdirs(tmpdir_path("cache/.cache/clip"));  // a url tag: OpenCLIP's download folder
    copy_file(script_path, tmpdir_path("cache/.cache/clip/ViT-B-32.pt"));
    assert_loads(config_b32, "openai", true);

    // a tag with its own mean and std, and the safetensors file of later OpenCLIP releases
    repo = tmpdir_path("cache/hf/hub/models--laion--CLIP-ViT-L-14-laion2B-s32B-b82K");
    snprintf(dir, sizeof dir, "%s/snapshots/feed", repo);
    mkdirs(dir);
    snprintf(path, sizeof path, "%s/open_clip_model.safetensors", dir);
    copy_file(st_path, path);
    session s;
    if (open_session(config_l14, "laion2b_s32b_b82k", &s) != 0) fail_msg("%s", err_msg());
    assert_source_weights(&s);
    assert_string_equal(s.weights.path, path);
    assert_string_equal(s.weights.tag, "laion2b_s32b_b82k");
    for (int c = 0; c < 3; c++) {
        assert_true(s.cfg.preprocess.mean[c] == 0.5f);
        assert_true(s.cfg.preprocess.std[c] == 0.5f);
    }
    session_close(&s);
}

static void test_tag_errors(void **state) {
    (void)state;
    set_caches("empty");
    assert_error(config_b32, "laion2b_s34b_b79k",
                 "models--laion--CLIP-ViT-B-32-laion2B-s34B-b79K/snapshots/*/open_clip_pytorch_model.bin",
                 "download open_clip_pytorch_model.bin of the Hugging Face hub repository laion/CLIP-ViT-B-32-laion2B-s34B-b79K");
    assert_error(config_b32, "laion2b_s34b_b79k", "snapshots/*/open_clip_model.safetensors", tmpdir_path("empty/hf/hub"));
    assert_error(config_b32, "openai", tmpdir_path("empty/.cache/clip/ViT-B-32.pt"),
                 "download https://openaipublic.azureedge.net/clip/models/");
    assert_error(config_b32, "laion2b_s99b", "nor a pretrained tag of ViT-B-32", "laion2b_s34b_b79k, ");
    assert_error(NULL, "laion2b_s34b_b79k", "needs --model", NULL);
}

static void test_bad_files(void **state) {
    (void)state;
    // a truncated .bin
    FILE *f = fopen(bin_path, "rb");
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    rewind(f);
    char *half = malloc((size_t)size / 2);
    assert_int_equal(fread(half, 1, (size_t)size / 2, f), (size_t)size / 2);
    fclose(f);
    const char *cut = tmpdir_path("cut.bin");
    write_file(cut, half, (size_t)size / 2);
    free(half);
    assert_error(config_b32, cut, cut, "truncated");

    // a zip written by torch.save that holds a list, not a state dict
    const char *list = tmpdir_path("list.pt");
    assert_int_equal(torch_file_write(list, TORCH_FILE_WRITE_LIST, items, source_items(false)), 0);
    assert_error(config_b32, list, list, "not a state dict");

    // a TorchScript archive of another model: a key the model does not have
    const char *other = tmpdir_path("other.pt");
    int n = source_items(true);
    items[n - 4].name = "visual.attnpool.c_proj.weight";
    assert_int_equal(torch_file_write(other, TORCH_FILE_WRITE_SCRIPT, items, n), 0);
    assert_error(config_b32, other, other, "missing key");

    // pickles libtorch's unpickler cannot step through: one cut inside an opcode's argument, one
    // without its STOP, one with an opcode Python's pickle never writes
    const char cp[] = "\x80\x02}q\x00X\x09\x00\x00\x00" "0.wei";
    expect_pickle_error("cut_pickle.bin", cp, sizeof cp - 1, "pickle opcode 0x58 at offset 5 runs past the end");
    expect_pickle_error("no_stop.bin", "\x80\x02}q\x00", 5, "no STOP opcode in its 5 bytes");
    expect_pickle_error("unknown.bin", "\x80\x02}\xf0.", 5, "pickle opcode 0xf0 at offset 3 is not one");

    // the legacy format: a pickle stream (protocol 2) starting with torch.save's magic number
    const char *legacy = tmpdir_path("legacy.pt");
    write_file(legacy, "\x80\x02\x8a\x0a" "l\xfc\x9c" "F\xf9 j\xa8" "P\x19.", 15);
    assert_error(config_b32, legacy, legacy, "legacy");
}

// Python's pickles read through pickle_rewrite: an OrderedDict with _metadata, as Python's
// model.state_dict(), and a one-element list (APPEND), as Python's pickle module writes them.
static void test_python_pickles(void **state) {
    (void)state;
    const char od[] = "\x80\x02" "ccollections\nOrderedDict\nq\x00)Rq\x01(X\x01\x00\x00\x00" "aq\x02K\x01"
                      "X\x01\x00\x00\x00" "bq\x03K\x02u}q\x04X\x09\x00\x00\x00_metadatah\x00)Rsb.";
    expect_pickle_error("ordered.bin", od, sizeof od - 1, "'a' is a Int, not a tensor");  // read as a dict
    const char ap[] = "\x80\x02}q\x00X\x01\x00\x00\x00pq\x01]q\x02K\x01" "as.";
    expect_pickle_error("append.pt", ap, sizeof ap - 1, "'p' is a GenericList, not a tensor");

    // what the rewrite cannot keep true is refused: the OrderedDict class as a value, and a GET of
    // an object memoized inside a dropped _metadata state (the string '_metadata', memo 3)
    const char cv[] = "\x80\x02}(X\x01\x00\x00\x00" "accollections\nOrderedDict\nu.";
    expect_pickle_error("class.bin", cv, sizeof cv - 1,
                        "offset 35 uses collections.OrderedDict other than as OrderedDict()");
    const char ru[] = "\x80\x02(ccollections\nOrderedDict\nq\x00)Rq\x01}q\x02X\x09\x00\x00\x00_metadataq\x03"
                      "h\x00)Rq\x04sbh\x03t.";
    expect_pickle_error("reused.bin", ru, sizeof ru - 1, "reads an object of a dropped OrderedDict _metadata");
}

// The files tests/data/make_torch_pickles.py wrote with Python's torch.save: a state dict
// (OrderedDict with _metadata) and an epoch_N.pt with "module." keys and AdamW's state (APPEND)
// hold value i of their tensors in order as 0.25 * i - 3, bit for bit.
static void assert_python_file(const char *name, const char *prefix) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", data_dir, name);
    torch_file *f = torch_file_open(path);
    if (!f) fail_msg("%s", err_msg());
    static const char *names[4] = {"0.weight", "0.bias", "1.weight", "1.bias"};
    static const int64_t numel[4] = {6, 2, 2, 2};
    assert_int_equal(torch_file_count(f), 4);
    float want = -3.0f;
    for (int i = 0; i < 4; i++) {
        const torch_file_tensor *t = torch_file_get(f, i);
        char key[64];
        snprintf(key, sizeof key, "%s%s", prefix, names[i]);
        assert_string_equal(t->name, key);
        assert_string_equal(t->dtype, "F32");
        assert_int_equal(t->ndim, i == 0 ? 2 : 1);
        assert_int_equal(t->nbytes, (size_t)numel[i] * sizeof(float));
        for (int64_t k = 0; k < numel[i]; k++, want += 0.25f)
            if (memcmp(&((const float *)t->data)[k], &want, sizeof want) != 0)
                fail_msg("%s: %s[%ld] is not %g", path, key, (long)k, (double)want);
    }
    torch_file_close(f);
}

static void test_python_files(void **state) {
    (void)state;
    assert_python_file("torch_state_dict.bin", "");
    assert_python_file("torch_epoch_1.pt", "module.");
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s TESTS_DATA_DIR\n", argv[0]);
        return 2;
    }
    data_dir = argv[1];
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_formats_load_as_safetensors),
        cmocka_unit_test(test_pytorch_files_need_model),
        cmocka_unit_test(test_tags_from_caches),
        cmocka_unit_test(test_tag_errors),
        cmocka_unit_test(test_bad_files),
        cmocka_unit_test(test_python_pickles),
        cmocka_unit_test(test_python_files),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
