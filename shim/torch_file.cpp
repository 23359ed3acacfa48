// The libtorch side of shim/torch_file.h: caffe2's zip reader and libtorch's unpickler for
// torch.save's files, torch::jit::load for TorchScript archives.
#include "shim/torch_file.h"

#include <caffe2/serialize/inline_container.h>
#include <torch/csrc/jit/api/module.h>
#include <torch/csrc/jit/serialization/import.h>
#include <torch/csrc/jit/serialization/pickle.h>
#include <torch/csrc/jit/serialization/unpickler.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "shim/pickle_rewrite.hpp"
#include "shim/tensor_impl.hpp"

struct torch_file {
    std::vector<std::string> names;
    std::vector<at::Tensor> values;  // contiguous, on the CPU
    std::vector<torch_file_tensor> items;
    bool script = false;
};

static const char *dtype_name(at::ScalarType s) {
    switch (s) {
    case at::kFloat: return "F32";
    case at::kHalf: return "F16";
    case at::kBFloat16: return "BF16";
    case at::kDouble: return "F64";
    case at::kLong: return "I64";
    case at::kInt: return "I32";
    case at::kShort: return "I16";
    case at::kChar: return "I8";
    case at::kByte: return "U8";
    case at::kBool: return "BOOL";
    default: return nullptr;
    }
}

static void add_tensor(torch_file *f, const std::string &path, const std::string &name, const at::Tensor &t) {
    if (!dtype_name(t.scalar_type()))
        throw shim_error(path + ": " + name + ": unsupported dtype " + std::string(c10::toString(t.scalar_type())));
    if (t.dim() > TENSOR_MAX_DIMS) throw shim_error(path + ": " + name + ": more than 8 dimensions");
    f->names.push_back(name);
    f->values.push_back(t.to(at::kCPU).contiguous());
}

static void index_items(torch_file *f) {
    f->items.resize(f->values.size());
    for (size_t i = 0; i < f->values.size(); i++) {
        const at::Tensor &t = f->values[i];
        torch_file_tensor *it = &f->items[i];
        it->name = f->names[i].c_str();
        it->dtype = dtype_name(t.scalar_type());
        it->ndim = (int)t.dim();
        for (int d = 0; d < it->ndim; d++) it->shape[d] = t.size(d);
        it->data = t.data_ptr();
        it->nbytes = t.nbytes();
    }
}

// The state dict of what torch.save pickled: the dict itself, or its "state_dict" entry.
static void read_state_dict(torch_file *f, const std::string &path, const c10::IValue &root) {
    if (!root.isGenericDict()) throw shim_error(path + ": holds a " + root.tagKind() + ", not a state dict (a dict of tensors)");
    c10::Dict<c10::IValue, c10::IValue> dict = root.toGenericDict();
    auto inner = dict.find(c10::IValue(std::string("state_dict")));
    if (inner != dict.end()) {
        if (!inner->value().isGenericDict()) throw shim_error(path + ": its \"state_dict\" is not a dict");
        dict = inner->value().toGenericDict();
    }
    for (const auto &e : dict) {
        if (!e.key().isString()) throw shim_error(path + ": a state dict key is a " + e.key().tagKind() + ", not a string");
        const std::string name = e.key().toStringRef();
        if (!e.value().isTensor())
            throw shim_error(path + ": '" + name + "' is a " + e.value().tagKind() + ", not a tensor (not a state dict?)");
        add_tensor(f, path, name, e.value().toTensor());
    }
}

static void read_script(torch_file *f, const std::string &path) {
    torch::jit::Module m = torch::jit::load(path, at::Device(at::kCPU));
    for (const auto &p : m.named_parameters(true)) add_tensor(f, path, p.name, p.value);
    for (const auto &b : m.named_buffers(true)) add_tensor(f, path, b.name, b.value);
    f->script = true;
}

// What data.pkl holds, read by libtorch's unpickler after pickle_rewrite (Python's OrderedDict and
// APPEND), its tensors from the archive's data/ records (as torch::jit::readArchiveAndTensors).
static c10::IValue read_pickle(caffe2::serialize::PyTorchStreamReader &reader, const std::string &path) {
    at::DataPtr record;
    size_t size = 0;
    std::tie(record, size) = reader.getRecord("data.pkl");
    const std::string pickle = pickle_rewrite((const char *)record.get(), size, path + ": data.pkl");
    size_t pos = 0;
    auto read = [&](char *buf, size_t len) -> size_t {
        size_t k = std::min(len, pickle.size() - pos);
        memcpy(buf, pickle.data() + pos, k);
        pos += k;
        return k;
    };
    auto read_record = [&](const std::string &name) { return std::get<0>(reader.getRecord("data/" + name)); };
    torch::jit::Unpickler unpickler(read, nullptr, nullptr, read_record, at::Device(at::kCPU));
    unpickler.set_version(reader.version());
    return unpickler.parse_ivalue();
}

static void read_file(torch_file *f, const std::string &path) {
    std::unique_ptr<caffe2::serialize::PyTorchStreamReader> reader;
    try {
        reader = std::make_unique<caffe2::serialize::PyTorchStreamReader>(path);
    } catch (const std::exception &e) {
        throw shim_error(path + ": not a readable PyTorch zip archive (truncated or damaged?): " + shim_what(e));
    }
    if (reader->hasRecord("constants.pkl")) {  // TorchScript's (torch.save never writes it)
        reader.reset();
        read_script(f, path);
        return;
    }
    if (!reader->hasRecord("data.pkl")) throw shim_error(path + ": a zip archive without data.pkl: not written by torch.save");
    try {
        read_state_dict(f, path, read_pickle(*reader, path));
    } catch (const shim_error &) {
        throw;
    } catch (const std::exception &e) {
        throw shim_error(path + ": libtorch's unpickler cannot read it (" + shim_what(e) + ")");
    }
}

static bool is_script(const char *path) {
    try {
        return caffe2::serialize::PyTorchStreamReader(path).hasRecord("constants.pkl");
    } catch (const std::exception &) {
        return false;  // torch_file_open says what is wrong with it
    }
}

extern "C" {

int torch_file_sniff(const char *path, torch_file_kind *kind) {
    FILE *in = fopen(path, "rb");
    if (!in) return err_set("%s: %s", path, strerror(errno));
    unsigned char b[2] = {0, 0};
    size_t n = fread(b, 1, sizeof b, in);
    fclose(in);
    *kind = TORCH_FILE_OTHER;
    if (n == 2 && b[0] == 'P' && b[1] == 'K') *kind = is_script(path) ? TORCH_FILE_SCRIPT : TORCH_FILE_ZIP;
    else if (n == 2 && b[0] == 0x80 && b[1] >= 2 && b[1] <= 5) *kind = TORCH_FILE_LEGACY;  // pickle PROTO 2-5
    return 0;
}

torch_file *torch_file_open(const char *path) {
    auto *f = new torch_file;
    try {
        read_file(f, path);
        index_items(f);
        return f;
    } catch (const shim_error &e) {
        err_set("%s", e.what());
    } catch (const std::exception &e) {
        err_set("%s: %s", path, shim_what(e).c_str());
    }
    delete f;
    return nullptr;
}

void torch_file_close(torch_file *f) { delete f; }

int torch_file_count(const torch_file *f) { return (int)f->items.size(); }

const torch_file_tensor *torch_file_get(const torch_file *f, int i) { return &f->items.at((size_t)i); }

bool torch_file_is_script(const torch_file *f) { return f->script; }

}  // extern "C"

// ---- test support ---------------------------------------------------------------------------------

static at::Tensor host_tensor(const torch_file_tensor &t) {
    at::ScalarType s = strcmp(t.dtype, "I64") == 0 ? at::kLong : at::kFloat;
    std::vector<int64_t> shape(t.shape, t.shape + t.ndim);
    return at::empty(shape, at::TensorOptions().dtype(s)).copy_(at::from_blob(const_cast<void *>(t.data), shape, s));
}

// The submodule that holds a dotted name's last part, made on the way ("visual.conv1.weight"),
// each of a class named after its path (module names such as "0" are no class names).
static torch::jit::Module owner_of(torch::jit::Module root, const std::string &name, std::string *leaf) {
    size_t begin = 0, dot;
    while ((dot = name.find('.', begin)) != std::string::npos) {
        std::string part = name.substr(begin, dot - begin), cls = "m_" + name.substr(0, dot);
        for (char &c : cls)
            if (c == '.') c = '_';
        if (!root.hasattr(part)) root.register_module(part, torch::jit::Module("__torch__.clipc_test." + cls));
        root = root.attr(part).toModule();
        begin = dot + 1;
    }
    *leaf = name.substr(begin);
    return root;
}

static void write_script(const char *path, const torch_file_tensor *ts, int n) {
    torch::jit::Module root("__torch__.clipc_test.CLIP");
    for (int i = 0; i < n; i++) {
        std::string leaf;
        torch::jit::Module m = owner_of(root, ts[i].name, &leaf);
        at::Tensor v = host_tensor(ts[i]);
        if (v.is_floating_point()) m.register_parameter(leaf, v, false);
        else m.register_buffer(leaf, v);  // OpenAI's input_resolution, context_length, vocab_size
    }
    root.save(path);
}

static void write_pickle(const char *path, torch_file_layout layout, const torch_file_tensor *ts, int n) {
    c10::Dict<std::string, at::Tensor> sd;
    c10::impl::GenericList list(c10::TensorType::get());
    for (int i = 0; i < n; i++) {
        std::string prefix = layout == TORCH_FILE_WRITE_CHECKPOINT ? "module." : "";
        sd.insert(prefix + ts[i].name, host_tensor(ts[i]));
        list.push_back(host_tensor(ts[i]));
    }
    c10::IValue root = sd;
    if (layout == TORCH_FILE_WRITE_CHECKPOINT) {
        c10::impl::GenericDict ck(c10::StringType::get(), c10::AnyType::get());
        ck.insert(std::string("epoch"), 1);
        ck.insert(std::string("name"), std::string("clipc-test"));
        ck.insert(std::string("state_dict"), sd);
        root = ck;
    } else if (layout == TORCH_FILE_WRITE_LIST) {
        root = list;
    }
    std::vector<char> bytes = torch::jit::pickle_save(root);
    std::ofstream out(path, std::ios::binary);
    out.write(bytes.data(), (std::streamsize)bytes.size());
    if (!out.flush()) throw shim_error(std::string(path) + ": cannot write");
}

extern "C" int torch_file_write(const char *path, torch_file_layout layout, const torch_file_tensor *tensors, int n) {
    SHIM_TRY(-1, {
        if (layout == TORCH_FILE_WRITE_SCRIPT) write_script(path, tensors, n);
        else write_pickle(path, layout, tensors, n);
        return 0;
    })
}

extern "C" int torch_file_write_pickle(const char *path, const void *pickle, size_t n) {
    SHIM_TRY(-1, {
        caffe2::serialize::PyTorchStreamWriter writer(path);
        writer.writeRecord("data.pkl", pickle, n);
        writer.writeEndOfFile();
        return 0;
    })
}
