// The pass of shim/pickle_rewrite.hpp: one walk over the opcodes with a stack of where each item
// began, then one copy that applies the edits.
#include "shim/pickle_rewrite.hpp"

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <unordered_map>
#include <vector>

#include "shim/tensor_impl.hpp"

namespace {

enum arg_kind : uint8_t {
    ARG_NONE,
    ARG_1, ARG_2, ARG_4, ARG_8,        // fixed bytes
    ARG_LINE, ARG_LINE2,               // one or two newline-terminated lines
    ARG_LEN1, ARG_LEN4, ARG_LEN8,      // a little-endian length of 1, 4 or 8 bytes, then that many bytes
};

struct opcode {
    char op;
    arg_kind arg;
    bool to_mark;   // pops the items above the topmost MARK and the MARK first
    int8_t pop;     // then pops this many items
    int8_t push;    // and pushes this many (new items begin where the deepest popped one began)
    bool in_place;  // the pushed item is the deepest popped one, changed (a list, dict or object)
};

// Every opcode Python's pickle writes for protocols 2-4 (and the text ones of protocols 0-1).
const opcode OPCODES[] = {
    {'(', ARG_NONE, false, 0, 0, false},  // MARK (pushed by hand)
    {'.', ARG_NONE, false, 0, 0, false},  // STOP
    {'0', ARG_NONE, false, 1, 0, false},  // POP
    {'1', ARG_NONE, true, 0, 0, false},   // POP_MARK
    {'N', ARG_NONE, false, 0, 1, false},  // NONE
    {'\x88', ARG_NONE, false, 0, 1, false}, {'\x89', ARG_NONE, false, 0, 1, false},  // NEWTRUE, NEWFALSE
    {'I', ARG_LINE, false, 0, 1, false}, {'J', ARG_4, false, 0, 1, false},    // INT, BININT
    {'K', ARG_1, false, 0, 1, false}, {'M', ARG_2, false, 0, 1, false},       // BININT1, BININT2
    {'L', ARG_LINE, false, 0, 1, false}, {'\x8a', ARG_LEN1, false, 0, 1, false},  // LONG, LONG1
    {'\x8b', ARG_LEN4, false, 0, 1, false},                                   // LONG4
    {'F', ARG_LINE, false, 0, 1, false}, {'G', ARG_8, false, 0, 1, false},    // FLOAT, BINFLOAT
    {'S', ARG_LINE, false, 0, 1, false}, {'V', ARG_LINE, false, 0, 1, false}, // STRING, UNICODE
    {'T', ARG_LEN4, false, 0, 1, false}, {'U', ARG_LEN1, false, 0, 1, false}, // BINSTRING, SHORT_BINSTRING
    {'X', ARG_LEN4, false, 0, 1, false}, {'\x8c', ARG_LEN1, false, 0, 1, false},  // BINUNICODE, SHORT_BINUNICODE
    {'\x8d', ARG_LEN8, false, 0, 1, false},                                   // BINUNICODE8
    {'B', ARG_LEN4, false, 0, 1, false}, {'C', ARG_LEN1, false, 0, 1, false}, // BINBYTES, SHORT_BINBYTES
    {'\x8e', ARG_LEN8, false, 0, 1, false},                                   // BINBYTES8
    {')', ARG_NONE, false, 0, 1, false}, {'t', ARG_NONE, true, 0, 1, false},  // EMPTY_TUPLE, TUPLE
    {'\x85', ARG_NONE, false, 1, 1, false}, {'\x86', ARG_NONE, false, 2, 1, false},  // TUPLE1, TUPLE2
    {'\x87', ARG_NONE, false, 3, 1, false},                                   // TUPLE3
    {']', ARG_NONE, false, 0, 1, false}, {'l', ARG_NONE, true, 0, 1, false},  // EMPTY_LIST, LIST
    {'a', ARG_NONE, false, 2, 1, true}, {'e', ARG_NONE, true, 1, 1, true},    // APPEND, APPENDS
    {'}', ARG_NONE, false, 0, 1, false}, {'d', ARG_NONE, true, 0, 1, false},  // EMPTY_DICT, DICT
    {'s', ARG_NONE, false, 3, 1, true}, {'u', ARG_NONE, true, 1, 1, true},    // SETITEM, SETITEMS
    {'\x8f', ARG_NONE, false, 0, 1, false}, {'\x90', ARG_NONE, true, 1, 1, true},  // EMPTY_SET, ADDITEMS
    {'\x91', ARG_NONE, true, 0, 1, false},                                    // FROZENSET
    {'c', ARG_LINE2, false, 0, 1, false}, {'\x93', ARG_NONE, false, 2, 1, false},  // GLOBAL, STACK_GLOBAL
    {'R', ARG_NONE, false, 2, 1, false}, {'b', ARG_NONE, false, 2, 1, true},  // REDUCE, BUILD
    {'\x81', ARG_NONE, false, 2, 1, false}, {'\x92', ARG_NONE, false, 3, 1, false},  // NEWOBJ, NEWOBJ_EX
    {'i', ARG_LINE2, true, 0, 1, false}, {'o', ARG_NONE, true, 0, 1, false},  // INST, OBJ
    {'p', ARG_LINE, false, 0, 0, false}, {'q', ARG_1, false, 0, 0, false},    // PUT, BINPUT
    {'r', ARG_4, false, 0, 0, false}, {'\x94', ARG_NONE, false, 0, 0, false}, // LONG_BINPUT, MEMOIZE
    {'g', ARG_LINE, false, 0, 1, false}, {'h', ARG_1, false, 0, 1, false},    // GET, BINGET
    {'j', ARG_4, false, 0, 1, false},                                         // LONG_BINGET
    {'P', ARG_LINE, false, 0, 1, false}, {'Q', ARG_NONE, false, 1, 1, false}, // PERSID, BINPERSID
    {'\x82', ARG_1, false, 0, 1, false}, {'\x83', ARG_2, false, 0, 1, false}, // EXT1, EXT2
    {'\x84', ARG_4, false, 0, 1, false},                                      // EXT4
    {'\x80', ARG_1, false, 0, 0, false}, {'\x95', ARG_8, false, 0, 0, false}, // PROTO, FRAME
};

enum item_kind : uint8_t { ITEM_MARK, ITEM_OTHER, ITEM_EMPTY_TUPLE, ITEM_ORDERED_DICT_CLASS, ITEM_ORDERED_DICT };

struct item {
    size_t start;   // offset of the first opcode that built it
    size_t op_end;  // the end of that opcode (and its argument)
    item_kind kind;
};

struct memo_slot {
    size_t put;             // offset of the PUT
    bool ordered_dict;      // holds the class collections.OrderedDict
    bool dropped = false;   // put inside a dropped _metadata state
};

struct edit {
    size_t begin, end;  // the input bytes [begin, end) ...
    std::string with;   // ... become these
};

struct walker {
    const unsigned char *in;
    size_t n;
    std::string where;
    std::vector<item> stack;
    std::unordered_map<uint64_t, memo_slot> memo;
    std::vector<edit> edits;

    [[noreturn]] void refuse(const char *problem, size_t off) const {
        char buf[200];
        snprintf(buf, sizeof buf, ": pickle opcode 0x%02x at offset %zu %s", in[off], off, problem);
        throw shim_error(where + buf);
    }

    uint64_t le(size_t at, int bytes) const {
        uint64_t v = 0;
        for (int i = bytes - 1; i >= 0; i--) v = v << 8 | in[at + (size_t)i];
        return v;
    }

    // The offset after the opcode at `off` and its argument.
    size_t arg_end(const opcode &o, size_t off) const {
        size_t at = off + 1;
        auto need = [&](uint64_t bytes) {
            if (bytes > n - at) refuse("runs past the end of the stream (truncated?)", off);
            at += (size_t)bytes;
        };
        auto line = [&] {
            const void *nl = at < n ? memchr(in + at, '\n', n - at) : nullptr;
            if (!nl) refuse("runs past the end of the stream (truncated?)", off);
            at = (size_t)((const unsigned char *)nl - in) + 1;
        };
        switch (o.arg) {
        case ARG_NONE: break;
        case ARG_1: need(1); break;
        case ARG_2: need(2); break;
        case ARG_4: need(4); break;
        case ARG_8: need(8); break;
        case ARG_LINE: line(); break;
        case ARG_LINE2: line(), line(); break;
        case ARG_LEN1: need(1), need(le(at - 1, 1)); break;
        case ARG_LEN4: need(4), need(le(at - 4, 4)); break;
        case ARG_LEN8: need(8), need(le(at - 8, 8)); break;
        }
        return at;
    }

    uint64_t memo_index(char op, size_t off, size_t end) const {
        if (op == 'q' || op == 'h') return le(off + 1, 1);
        if (op == 'r' || op == 'j') return le(off + 1, 4);
        return strtoull(std::string((const char *)in + off + 1, end - off - 2).c_str(), nullptr, 10);  // text
    }

    item pop_item(size_t off) {
        if (stack.empty() || stack.back().kind == ITEM_MARK) refuse("pops more than the stack holds", off);
        if (stack.back().kind == ITEM_ORDERED_DICT_CLASS) refuse("uses collections.OrderedDict other than as OrderedDict()", off);
        item it = stack.back();
        stack.pop_back();
        return it;
    }

    // `OrderedDict-class [PUTs] EMPTY_TUPLE REDUCE` at `off`: the class's opcode becomes
    // EMPTY_DICT (a PUT after it memoizes the dict, a slot no GET then reads as the class) and
    // EMPTY_TUPLE REDUCE go. Returns whether it was one.
    bool rewrite_ordered_dict(size_t off) {
        if (stack.size() < 2) return false;
        const item &cls = stack[stack.size() - 2], &args = stack.back();
        if (cls.kind != ITEM_ORDERED_DICT_CLASS || args.kind != ITEM_EMPTY_TUPLE || args.start != off - 1) return false;
        edits.push_back({cls.start, cls.op_end, "}"});
        edits.push_back({args.start, off + 1, ""});
        size_t start = cls.start;
        stack.resize(stack.size() - 2);
        stack.push_back({start, start, ITEM_ORDERED_DICT});
        return true;
    }

    // `OrderedDict state BUILD` at `off` (its _metadata): the state and BUILD go; a GET of what
    // the state memoized is refused.
    bool drop_build(size_t off) {
        if (stack.size() < 2 || stack[stack.size() - 2].kind != ITEM_ORDERED_DICT || stack.back().kind == ITEM_MARK) return false;
        const size_t start = stack.back().start;
        edits.push_back({start, off + 1, ""});
        for (auto &m : memo)
            if (m.second.put >= start) m.second.dropped = true;
        stack.pop_back();
        return true;
    }

    void step(const opcode &o, size_t off, size_t end) {
        const char op = o.op;
        item_kind kind = ITEM_OTHER;
        if (op == 'c' && end - off - 1 == 24 && memcmp(in + off + 1, "collections\nOrderedDict\n", 24) == 0)
            kind = ITEM_ORDERED_DICT_CLASS;
        if (op == ')') kind = ITEM_EMPTY_TUPLE;
        if (op == 'g' || op == 'h' || op == 'j') {
            auto slot = memo.find(memo_index(op, off, end));
            if (slot != memo.end() && slot->second.dropped) refuse("reads an object of a dropped OrderedDict _metadata", off);
            if (slot != memo.end() && slot->second.ordered_dict) kind = ITEM_ORDERED_DICT_CLASS;
        }
        if (op == 'p' || op == 'q' || op == 'r' || op == '\x94') {
            if (stack.empty() || stack.back().kind == ITEM_MARK) refuse("memoizes an empty stack", off);
            uint64_t index = op == '\x94' ? memo.size() : memo_index(op, off, end);
            memo[index] = {off, stack.back().kind == ITEM_ORDERED_DICT_CLASS};
        }
        if ((op == 'R' && rewrite_ordered_dict(off)) || (op == 'b' && drop_build(off))) return;
        if (op == 'a' && !stack.empty()) {
            edits.push_back({stack.back().start, stack.back().start, "("});  // MARK item APPENDS
            edits.push_back({off, off + 1, "e"});
        }
        if (op == 's' && stack.size() >= 2) {
            const size_t key = stack[stack.size() - 2].start;
            edits.push_back({key, key, "("});  // MARK key value SETITEMS
            edits.push_back({off, off + 1, "u"});
        }
        if (op == '\x95') edits.push_back({off, end, ""});  // FRAME
        if (op == '(') {
            stack.push_back({off, end, ITEM_MARK});
            return;
        }
        size_t start = off;
        if (o.to_mark) {
            while (!stack.empty() && stack.back().kind != ITEM_MARK) pop_item(off);
            if (stack.empty()) refuse("finds no MARK on the stack", off);
            start = stack.back().start;
            stack.pop_back();
        }
        item deepest = {start, end, kind};
        for (int i = 0; i < o.pop; i++) deepest = pop_item(off);
        if (o.pop > 0) start = deepest.start;
        if (o.in_place && o.pop > 0) kind = deepest.kind;
        for (int i = 0; i < o.push; i++) stack.push_back({start, deepest.op_end, kind});
    }
};

const opcode *find_opcode(unsigned char byte) {
    for (const opcode &o : OPCODES)
        if ((unsigned char)o.op == byte) return &o;
    return nullptr;
}

}  // namespace

std::string pickle_rewrite(const char *data, size_t n, const std::string &where) {
    walker w{(const unsigned char *)data, n, where, {}, {}, {}};
    size_t off = 0;
    for (;;) {
        if (off >= n) throw shim_error(where + ": truncated pickle: no STOP opcode in its " + std::to_string(n) + " bytes");
        const opcode *o = find_opcode(w.in[off]);
        if (!o) w.refuse("is not one Python's pickle writes (protocols 2-4)", off);
        size_t end = w.arg_end(*o, off);
        w.step(*o, off, end);
        off = end;
        if (o->op == '.') break;
    }
    // apply the edits in order; one inside a dropped range goes with it (insertions first)
    std::sort(w.edits.begin(), w.edits.end(), [](const edit &x, const edit &y) {
        if (x.begin != y.begin) return x.begin < y.begin;
        if ((x.begin == x.end) != (y.begin == y.end)) return x.begin == x.end;
        return x.end > y.end;
    });
    std::string out;
    out.reserve(n + w.edits.size());
    size_t at = 0;
    for (const edit &e : w.edits) {
        if (e.begin < at) continue;
        out.append(data + at, e.begin - at);
        out += e.with;
        at = e.end;
    }
    out.append(data + at, n - at);
    return out;
}
