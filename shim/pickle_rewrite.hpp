// pickle_rewrite: a bounded rewrite of the pickle stream (data.pkl) Python's torch.save writes, so
// that libtorch's unpickler reads what it otherwise cannot (shim/torch_file.cpp uses it):
// - collections.OrderedDict: libtorch turns every one into None (it expects one only as a
//   tensor's backward hooks; pytorch/pytorch#100741), so Python's model.state_dict() fails.
//   `class [PUTs] EMPTY_TUPLE REDUCE`, the class a GLOBAL 'collections OrderedDict' (as torch.save's
//   pickle protocol 2 writes it) or a GET of the memo slot it was put in, becomes
//   `EMPTY_DICT [PUTs]`: a plain dict, and the memo indices stay valid (a slot that held the class
//   holds a dict that no GET then reads: every GET of it is rewritten too, any other use of the
//   class is refused). libtorch has no POP, so `dict state BUILD`, which sets the OrderedDict's
//   `_metadata` (the state, a dict), loses the state's opcodes and BUILD; a later GET of what the
//   state memoized is refused.
// - APPEND and SETITEM (what Python writes for a list or dict of one item: an optimizer's
//   one-parameter group), which libtorch 1.13 lacks: a MARK is inserted where the item's (the
//   key's) opcodes begin and APPEND becomes APPENDS, SETITEM SETITEMS.
// Nothing else changes. To know what is below each item the pass steps over every opcode of
// protocols 0-4 (its argument length and stack effect) and tracks each stack item's first byte;
// FRAME (protocol 4, a read-ahead hint) is dropped since inserted bytes would break its length.
// An unknown opcode, a truncated stream or a stack underflow is refused with one line naming the
// file, the opcode byte and its offset.
#ifndef CLIPC_SHIM_PICKLE_REWRITE_HPP
#define CLIPC_SHIM_PICKLE_REWRITE_HPP

#include <cstddef>
#include <string>

// The rewritten pickle of data[0, n); throws shim_error "<where>: <problem>" for a stream it
// cannot step through.
std::string pickle_rewrite(const char *data, size_t n, const std::string &where);

#endif
