// The backend-independent side of shim/dist.h: joining (the TCP store), argument checks, the
// failure messages with the peers that never came, and the LOCAL backend.
#include "shim/dist.h"

#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include <algorithm>
#include <csignal>
#include <cstring>
#include <sstream>
#include <thread>

#include "shim/dist_comm.hpp"

namespace dist_impl {

namespace {

std::string reached_key(int rank) { return "clipc/reached/" + std::to_string(rank); }

// Whether rank p recorded that it reached the collective numbered seq (or a later one).
bool reached(c10d::Store &store, int p, uint64_t seq) {
    std::string key = reached_key(p);
    if (!store.check({key})) return false;
    std::vector<uint8_t> v = store.get(key);
    return std::stoull(std::string(v.begin(), v.end())) >= seq;
}

std::string list_ranks(const std::vector<int> &ranks) {
    std::string s = ranks.size() == 1 ? "rank " : "ranks ";
    for (size_t i = 0; i < ranks.size(); i++) s += (i ? ", " : "") + std::to_string(ranks[i]);
    return s;
}

// One process: nothing travels; the gathered rows are this rank's own.
class local_comm : public comm {
  public:
    void all_reduce(const call &, std::vector<at::Tensor> &) override {}
    void all_gather(const call &, at::Tensor &out, at::Tensor &in) override { out.copy_(in); }
    void reduce_scatter(const call &, at::Tensor &out, at::Tensor &in) override { out.copy_(in); }
    void broadcast(const call &, std::vector<at::Tensor> &, int) override {}
    void barrier(const call &) override {}
    void synchronize() override {}
    void start_sum(const call &, std::vector<at::Tensor> &, int) override {}
    void wait_sums() override {}
    void sum_times(double *comm_s, double *exposed_s) override { *comm_s = *exposed_s = 0; }
    c10::optional<at::Device> device() const override { return c10::nullopt; }
};

}  // namespace

std::chrono::milliseconds group::announce_after() const {
    return std::min<std::chrono::milliseconds>(std::chrono::seconds(1), timeout / 2);
}

void group::announce(const call &c) const {
    if (!store) return;
    try {
        std::string v = std::to_string(c.seq);
        store->set(reached_key(rank), std::vector<uint8_t>(v.begin(), v.end()));
    } catch (const std::exception &) {
        // The store is gone with rank 0: missing_peers() says so.
    }
}

std::string group::missing_peers(const call &c) const {
    if (!store || world == 1) return "";
    announce(c);
    // The peers that reached c announce it within announce_after() of entering it, or as they fail.
    clock::time_point deadline = clock::now() + std::min<std::chrono::milliseconds>(2 * announce_after(), timeout);
    std::vector<int> missing;
    bool looked = false;
    try {
        for (;;) {
            std::vector<int> now_missing;
            for (int p = 0; p < world; p++)
                if (p != rank && !reached(*store, p, c.seq)) now_missing.push_back(p);
            missing = now_missing;
            looked = true;
            if (missing.empty() || clock::now() >= deadline) break;
            std::this_thread::sleep_for(std::chrono::milliseconds(50));
        }
    } catch (const std::exception &) {
        // Rank 0 serves the store: it is gone, or left after a look that is still the best answer.
        if (!looked && rank != 0) missing = {0};
    }
    return missing.empty() ? "" : " (peer " + list_ranks(missing) + " gone?)";
}

std::string group::where_line(const call &c) const {
    std::string s = "rank " + std::to_string(rank) + ": " + c.op;
    if (!c.where.empty()) s += " at " + c.where;
    return s;
}

std::string group::describe(const call &c, const std::string &problem) const {
    return where_line(c) + " " + problem + missing_peers(c);
}

std::string group::timeout_text() const {
    std::ostringstream s;
    s << (double)timeout.count() / 1000.0 << " s";
    return s.str();
}

std::string group::describe_timeout(const call &c) const { return describe(c, "timed out after " + timeout_text()); }

}  // namespace dist_impl

struct dist_pg {
    dist_impl::group g;
    std::unique_ptr<dist_impl::comm> comm;
    std::string where, site;
    uint64_t seq = 0;     // collectives started: the same sequence on every rank
    std::string failure;  // the first failure: every later call fails with it
    dist_pg_stats stats{};
    bool strict = false;  // strict device mode on Gloo: only tensors tagged device_tag
    int device_tag = 0;
    bool debug = false;   // the consistency check before every collective
    std::string fail_at;  // CLIPC_DIST_FAIL_AT: the collective that fails after it returns
    uint64_t root_waits = 0;  // dist_pg_wait_root calls: the same sequence on every rank
    dist_op last_sum_op = DIST_OP_ALL_REDUCE;  // of the last dist_pg_start_sum
};

namespace {

using dist_impl::call;

std::string shape_of(c10::IntArrayRef sizes) {
    std::ostringstream s;
    s << sizes;
    return s.str();
}

[[noreturn]] void bad_argument(const dist_pg *pg, const call &c, const std::string &problem) {
    throw shim_error(pg->g.where_line(c) + ": " + problem);
}

// The dtypes NCCL reduces (shim/dist_nccl.cpp's nccl_type).
bool nccl_has(at::ScalarType s) {
    switch (s) {
    case at::kFloat: case at::kHalf: case at::kBFloat16: case at::kDouble: case at::kLong: case at::kInt: case at::kByte:
        return true;
    default: return false;
    }
}

std::string tag_device(int tag) { return tag > 0 ? "cpu:" + std::to_string(tag) : "the host"; }

// The tensor behind a handle, checked for what every backend needs (and, in strict device mode,
// for what NCCL needs: its rank's device and a dtype NCCL has).
at::Tensor checked(const dist_pg *pg, const call &c, const tensor *h, const std::string &name) {
    const at::Tensor &t = h->t;
    if (!t.is_contiguous()) bad_argument(pg, c, name + " is not contiguous");
    c10::optional<at::Device> dev = pg->comm->device();
    if (dev && t.device() != *dev)
        bad_argument(pg, c, name + " is on " + t.device().str() + " but the group works on " + dev->str());
    if (pg->strict && h->device_tag != pg->device_tag)
        bad_argument(pg, c, name + " is on " + tag_device(h->device_tag) + " but the group works on " +
                                tag_device(pg->device_tag) + " (strict device mode, CLIPC_DIST_STRICT=1)");
    if (pg->strict && !nccl_has(t.scalar_type()))
        bad_argument(pg, c, name + " is " + c10::toString(t.scalar_type()) + ", a dtype NCCL lacks (strict device mode)");
    return t;
}

std::vector<at::Tensor> checked_list(const dist_pg *pg, const call &c, tensor *const *hs, int n) {
    std::vector<at::Tensor> ts;
    for (int i = 0; i < n; i++) ts.push_back(checked(pg, c, hs[i], "tensor " + std::to_string(i)));
    return ts;
}

// rows (B, ...) and all (R*B, ...): same dtype, same trailing shape, R times the rows.
void check_stacked(const dist_pg *pg, const call &c, const at::Tensor &rows, const at::Tensor &all,
                   const char *rows_name, const char *all_name) {
    if (rows.scalar_type() != all.scalar_type())
        bad_argument(pg, c, std::string(all_name) + " is " + c10::toString(all.scalar_type()) + " but " + rows_name +
                                " is " + c10::toString(rows.scalar_type()));
    std::vector<int64_t> expected = rows.sizes().vec();
    if (expected.empty()) bad_argument(pg, c, std::string(rows_name) + " has no rows (a rank-0 tensor)");
    expected[0] *= pg->g.world;
    if (all.sizes().vec() != expected)
        bad_argument(pg, c, std::string(all_name) + " is " + shape_of(all.sizes()) + ", expected " + shape_of(expected) +
                                " (" + rows_name + " " + shape_of(rows.sizes()) + " times the world size " +
                                std::to_string(pg->g.world) + ")");
}

int64_t bytes_of(const std::vector<at::Tensor> &ts) {
    int64_t n = 0;
    for (const at::Tensor &t : ts) n += (int64_t)t.nbytes();
    return n;
}

// What a collective is, as every rank must agree (--dist-debug): a fixed-size record gathered
// from every rank before the collective itself.
struct descriptor {
    uint64_t seq;
    char what[192];  // "all_reduce of 3 tensors: f32 [10], ..."
    char site[192];  // "at step 2 (train/step.c:61)"
};

void put_text(char *dst, size_t cap, const std::string &src) {
    std::memset(dst, 0, cap);
    std::memcpy(dst, src.data(), std::min(src.size(), cap - 1));
}

std::string tensor_text(const at::Tensor &t) {
    return std::string(c10::toString(t.scalar_type())) + " " + shape_of(t.sizes());
}

// "all_reduce of 3 tensors: Float [10], Float [5], Float [1]": the kind, dtypes and shapes
// (long lists keep their first and last tensors and a hash of all).
std::string signature(const char *op, const std::vector<const tensor *> &ts) {
    std::string s = op;
    if (ts.empty()) return s;
    s += " of " + std::to_string(ts.size()) + (ts.size() == 1 ? " tensor: " : " tensors: ");
    uint64_t hash = 1469598103934665603ull;
    for (size_t i = 0; i < ts.size(); i++) {
        std::string one = ts[i] ? tensor_text(ts[i]->t) : "NULL";
        for (char ch : one) hash = (hash ^ (uint8_t)ch) * 1099511628211ull;
        if (ts.size() <= 4 || i == 0 || i + 1 == ts.size()) s += (i ? ", " : "") + one;
        else if (i == 1) s += ", ...";
    }
    if (ts.size() > 4) s += " (hash " + std::to_string(hash % 1000000) + ")";
    return s;
}

std::string site_text(const dist_pg *pg) {
    std::string s = pg->where.empty() ? "" : "at " + pg->where;
    if (!pg->site.empty()) s += (s.empty() ? "(" : " (") + pg->site + ")";
    return s;
}

// Gathers every rank's descriptor of collective c and fails, on every rank at once, when one differs:
//   rank 1: collective 7 differs across ranks (--dist-debug): rank 1 all_gather ... at step 2
//   (train/step.c:30), rank 0 all_reduce ... at step 2 (train/step.c:61)
void check_consistent(dist_pg *pg, const call &c, const std::string &what) {
    descriptor mine{};
    mine.seq = c.seq;
    put_text(mine.what, sizeof mine.what, what);
    put_text(mine.site, sizeof mine.site, site_text(pg));
    int64_t size = (int64_t)sizeof mine;
    at::TensorOptions o = at::TensorOptions().dtype(at::kByte);
    if (pg->comm->device()) o = o.device(*pg->comm->device());
    at::Tensor in = at::from_blob(&mine, {1, size}, at::kByte).to(o.device_opt().value_or(at::kCPU)).clone();
    at::Tensor out = at::empty({pg->g.world, size}, o);
    pg->comm->all_gather(c, out, in);  // a failure here reads as the collective's own
    out = out.to(at::kCPU).contiguous();
    const descriptor *all = (const descriptor *)out.data_ptr();
    auto same = [&](const descriptor &d) {
        return d.seq == mine.seq && !std::strncmp(d.what, mine.what, sizeof d.what) &&
               !std::strncmp(d.site, mine.site, sizeof d.site);
    };
    for (int r = 0; r < pg->g.world; r++) {
        if (same(all[r])) continue;
        auto line = [](int rank, const descriptor &d) {
            return "rank " + std::to_string(rank) + " collective " + std::to_string(d.seq) + " " +
                   std::string(d.what, strnlen(d.what, sizeof d.what)) + " " + std::string(d.site, strnlen(d.site, sizeof d.site));
        };
        throw shim_error("rank " + std::to_string(pg->g.rank) + ": collectives differ across ranks (--dist-debug): " +
                         line(pg->g.rank, mine) + "; " + line(r, all[r]));
    }
}

// CLIPC_DIST_FAIL_AT (a test hook): the collective numbered N, or the first one whose "OP at WHERE"
// reads the value, fails after it returned, as a collective NCCL's watchdog aborts: the call
// succeeds and the next one, or dist_pg_synchronize, reports the failure.
void inject_failure(dist_pg *pg, const call &c) {
    if (pg->fail_at.empty()) return;
    std::string label = std::string(c.op) + (c.where.empty() ? "" : " at " + c.where);
    if (pg->fail_at != std::to_string(c.seq) && pg->fail_at != label) return;
    pg->fail_at.clear();
    pg->failure = pg->g.where_line(c) + " failed after it returned: the communicator was aborted (injected by "
                  "CLIPC_DIST_FAIL_AT)";
}

// Runs one collective: numbers it, checks it against the other ranks' (--dist-debug), breaks the
// group when it fails, and counts it (body returns its payload in bytes) when it succeeds.
template <class F>
int run(dist_pg *pg, dist_op op, const std::vector<const tensor *> &ts, F body) {
    SHIM_TRY(-1, {
        if (!pg->failure.empty()) throw shim_error(pg->failure);
        call c{dist_op_name(op), ++pg->seq, pg->where};
        at::NoGradGuard no_grad;
        try {
            dist_impl::clock::time_point start = dist_impl::clock::now();
            if (pg->debug && pg->g.world > 1) check_consistent(pg, c, signature(c.op, ts));
            int64_t bytes = body(c);
            inject_failure(pg, c);
            dist_op_stats &st = pg->stats.op[op];
            st.calls++;
            st.bytes += bytes;
            st.seconds += std::chrono::duration<double>(dist_impl::clock::now() - start).count();
        } catch (const shim_error &e) {
            pg->failure = e.what();
            throw;
        } catch (const std::exception &e) {
            pg->failure = pg->g.where_line(c) + ": " + shim_what(e);
            throw shim_error(pg->failure);
        }
        return 0;
    })
}

bool all_present(tensor *const *hs, int n) {
    for (int i = 0; i < n; i++)
        if (!hs[i]) return false;
    return true;
}

std::unique_ptr<dist_impl::comm> make_comm(dist_impl::group &g, const dist_pg_options *o) {
    switch (o->backend) {
    case DIST_BACKEND_LOCAL: return std::make_unique<dist_impl::local_comm>();
#ifdef CLIPC_HAVE_GLOO
    case DIST_BACKEND_GLOO: return dist_impl::make_gloo_comm(g, o->master_addr);
#endif
#ifdef CLIPC_HAVE_NCCL
    case DIST_BACKEND_NCCL: return dist_impl::make_nccl_comm(g, o->device);
#endif
    default: break;
    }
    throw shim_error(std::string("dist: the ") + dist_backend_name(o->backend) + " backend is not built into this clipc");
}

// The group's store. Rank 0 serves it, unless a launcher already does (torchrun's agent): then
// every rank is a client and the keys go under the launcher's prefix. Either way a failure names
// what was tried: a client that cannot connect gives up within the timeout.
// Waits of the rendezvous are cut into periods of DIST_NOTICE_EVERY_S (at most half the timeout, at
// least 1 s); after each period still waiting, notice() gets one line saying for what.
std::chrono::milliseconds notice_period(std::chrono::milliseconds timeout) {
    return std::max<std::chrono::milliseconds>(
        std::chrono::seconds(1),
        std::min<std::chrono::milliseconds>(std::chrono::milliseconds((int64_t)(DIST_NOTICE_EVERY_S * 1000)), timeout / 2));
}

void notify(const dist_pg_options *o, const std::string &what, dist_impl::clock::time_point start,
            std::chrono::milliseconds timeout) {
    if (!o->notice) return;
    double waited = std::chrono::duration<double>(dist_impl::clock::now() - start).count();
    std::ostringstream m;
    m << "rank " << o->rank << ": " << what << " at " << o->master_addr << ":" << o->master_port << " ("
      << (int)waited << " s of " << (double)timeout.count() / 1000.0 << " s)";
    o->notice(m.str().c_str());
}

c10::intrusive_ptr<c10d::Store> make_store(const dist_pg_options *o, std::chrono::milliseconds timeout) {
    bool agent = o->agent_store_prefix && *o->agent_store_prefix;
    c10d::TCPStoreOptions so;
    so.port = (uint16_t)o->master_port;
    so.isServer = !agent && o->rank == 0;
    so.numWorkers = (size_t)o->world_size;
    so.waitWorkers = false;  // wait_for_ranks() names the missing ones
    so.timeout = timeout;
    dist_impl::clock::time_point start = dist_impl::clock::now(), deadline = start + timeout;
    for (;;) {
        // A client tries for one notice period at a time, so that a long wait is reported.
        std::chrono::milliseconds left =
            std::chrono::duration_cast<std::chrono::milliseconds>(deadline - dist_impl::clock::now());
        // libtorch's client counts its connect timeout in whole seconds: 1 s at least.
        so.timeout = so.isServer ? timeout : std::max<std::chrono::milliseconds>(
                                                 std::chrono::seconds(1), std::min(notice_period(timeout), left));
        try {
            c10::intrusive_ptr<c10d::Store> store = c10::make_intrusive<c10d::TCPStore>(o->master_addr, so);
            store->setTimeout(timeout);
            if (!agent) return store;
            return c10::make_intrusive<c10d::PrefixStore>(o->agent_store_prefix, store);
        } catch (const std::exception &e) {
            if (so.isServer)
                throw std::runtime_error("cannot serve the store on port " + std::to_string(o->master_port) +
                                         " (another run or a launcher's store on it? torchrun's agent says so with "
                                         "TORCHELASTIC_USE_AGENT_STORE=True): " + shim_what(e));
            if (dist_impl::clock::now() >= deadline) {
                // dist_pg_new's message names the address and port.
                std::ostringstream m;
                m << "no store answered within " << (double)timeout.count() / 1000.0 << " s"
                  << (agent ? " (torchrun's agent should serve it)" : "") << ": " << shim_what(e);
                throw std::runtime_error(m.str());
            }
            notify(o, std::string("waiting for the store of ") + (agent ? "torchrun's agent" : "rank 0"), start, timeout);
        }
    }
}

// Every rank records itself in the store, then waits until all have (one round trip per look),
// so that a rank that never starts is named rather than left to a backend's socket timeout.
void wait_for_ranks(const dist_impl::group &g, const dist_pg_options *o) {
    auto key = [](int r) { return "clipc/joined/" + std::to_string(r); };
    g.store->set(key(g.rank), std::vector<uint8_t>{1});
    std::vector<std::string> keys;
    for (int r = 0; r < g.world; r++) keys.push_back(key(r));
    auto missing = [&] {
        std::vector<int> m;
        for (int r = 0; r < g.world; r++)
            if (!g.store->check({key(r)})) m.push_back(r);
        return m;
    };
    dist_impl::clock::time_point start = dist_impl::clock::now(), deadline = start + g.timeout;
    dist_impl::clock::time_point next_notice = start + notice_period(g.timeout);
    while (!g.store->check(keys)) {
        dist_impl::clock::time_point now = dist_impl::clock::now();
        if (now >= deadline)
            throw std::runtime_error(dist_impl::list_ranks(missing()) + " did not join within " + g.timeout_text());
        if (now >= next_notice) {
            notify(o, "waiting for " + dist_impl::list_ranks(missing()) + " to join the " +
                          dist_backend_name(o->backend) + " group", start, g.timeout);
            next_notice = now + notice_period(g.timeout);
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
}

void check_options(const dist_pg_options *o) {
    if (o->world_size < 1 || o->rank < 0 || o->rank >= o->world_size)
        throw shim_error("dist: rank " + std::to_string(o->rank) + " is not in a world of " +
                         std::to_string(o->world_size));
    if (!(o->timeout_s > 0)) throw shim_error("dist: the timeout must be positive");
    if (o->backend == DIST_BACKEND_LOCAL && o->world_size != 1)
        throw shim_error("dist: the local backend runs one process, not " + std::to_string(o->world_size));
    if (o->backend != DIST_BACKEND_LOCAL && (!o->master_addr || !*o->master_addr))
        throw shim_error("dist: no master address for the TCP store");
    if (o->backend != DIST_BACKEND_LOCAL && (o->master_port < 1 || o->master_port > 65535))
        throw shim_error("dist: master port " + std::to_string(o->master_port) + " is not in 1..65535");
}

}  // namespace

extern "C" {

const char *dist_backend_name(dist_backend backend) {
    switch (backend) {
    case DIST_BACKEND_LOCAL: return "local";
    case DIST_BACKEND_GLOO: return "gloo";
    case DIST_BACKEND_NCCL: return "nccl";
    }
    return "?";
}

bool dist_backend_built(dist_backend backend) {
    switch (backend) {
    case DIST_BACKEND_LOCAL: return true;
#ifdef CLIPC_HAVE_GLOO
    case DIST_BACKEND_GLOO: return true;
#endif
#ifdef CLIPC_HAVE_NCCL
    case DIST_BACKEND_NCCL: return true;
#endif
    default: return false;
    }
}

const char *dist_op_name(dist_op op) {
    switch (op) {
    case DIST_OP_ALL_REDUCE: return "all_reduce";
    case DIST_OP_ALL_GATHER: return "all_gather";
    case DIST_OP_REDUCE_SCATTER: return "reduce_scatter";
    case DIST_OP_BROADCAST: return "broadcast";
    case DIST_OP_BARRIER: return "barrier";
    case DIST_OP_REDUCE: return "reduce";
    case DIST_OP_COUNT: break;
    }
    return "?";
}

dist_pg *dist_pg_new(const dist_pg_options *o) {
    SHIM_NEED(o);
    SHIM_TRY(nullptr, {
        check_options(o);
        // Gloo writes to its peers with writev: to a peer that is gone, that raises SIGPIPE, whose
        // default kills this rank without a word (Python ignores it, so PyTorch's users never see
        // it). Ignored, the write fails with EPIPE and the collective's error names the peer.
        std::signal(SIGPIPE, SIG_IGN);
        auto pg = std::make_unique<dist_pg>();
        pg->g.rank = o->rank;
        pg->g.world = o->world_size;
        pg->g.timeout = std::chrono::milliseconds((int64_t)(o->timeout_s * 1000.0 + 0.5));
        pg->strict = shim_strict() && o->backend == DIST_BACKEND_GLOO;
        pg->device_tag = shim_device_tag(tensor_device{TENSOR_DEVICE_CPU, o->device});
        pg->debug = o->debug;
        pg->fail_at = o->fail_at ? o->fail_at : "";
        try {
            if (o->backend != DIST_BACKEND_LOCAL) {
                pg->g.store = make_store(o, pg->g.timeout);
                wait_for_ranks(pg->g, o);
            }
            pg->comm = make_comm(pg->g, o);
        } catch (const shim_error &) {
            throw;
        } catch (const std::exception &e) {
            throw shim_error("rank " + std::to_string(o->rank) + ": joining the " + dist_backend_name(o->backend) +
                             " group of " + std::to_string(o->world_size) + " ranks at " + o->master_addr + ":" +
                             std::to_string(o->master_port) + ": " + shim_what(e));
        }
        return pg.release();
    })
}

void dist_pg_free(dist_pg *pg) { delete pg; }

void dist_pg_set_where(dist_pg *pg, const char *where) {
    if (pg) pg->where = where ? where : "";
}

void dist_pg_set_site(dist_pg *pg, const char *site) {
    if (pg) pg->site = site ? site : "";
}

int dist_pg_all_reduce(dist_pg *pg, tensor *const *tensors, int n) {
    SHIM_NEED_INT(pg, tensors);
    if (!all_present(tensors, n)) return -1;
    return run(pg, DIST_OP_ALL_REDUCE, {tensors, tensors + n}, [&](const call &c) {
        std::vector<at::Tensor> ts = checked_list(pg, c, tensors, n);
        if (!ts.empty()) pg->comm->all_reduce(c, ts);
        return bytes_of(ts);
    });
}

int dist_pg_all_gather(dist_pg *pg, tensor *out, const tensor *in) {
    SHIM_NEED_INT(pg, out, in);
    return run(pg, DIST_OP_ALL_GATHER, {out, in}, [&](const call &c) {
        at::Tensor o = checked(pg, c, out, "out"), i = checked(pg, c, in, "in");
        check_stacked(pg, c, i, o, "in", "out");
        pg->comm->all_gather(c, o, i);
        return (int64_t)o.nbytes();
    });
}

int dist_pg_reduce_scatter(dist_pg *pg, tensor *out, const tensor *in) {
    SHIM_NEED_INT(pg, out, in);
    return run(pg, DIST_OP_REDUCE_SCATTER, {out, in}, [&](const call &c) {
        at::Tensor o = checked(pg, c, out, "out"), i = checked(pg, c, in, "in");
        check_stacked(pg, c, o, i, "out", "in");
        pg->comm->reduce_scatter(c, o, i);
        return (int64_t)i.nbytes();
    });
}

int dist_pg_broadcast(dist_pg *pg, tensor *const *tensors, int n, int root) {
    SHIM_NEED_INT(pg, tensors);
    if (!all_present(tensors, n)) return -1;
    return run(pg, DIST_OP_BROADCAST, {tensors, tensors + n}, [&](const call &c) {
        if (root < 0 || root >= pg->g.world)
            bad_argument(pg, c, "root " + std::to_string(root) + " is not a rank of " + std::to_string(pg->g.world));
        std::vector<at::Tensor> ts = checked_list(pg, c, tensors, n);
        if (!ts.empty()) pg->comm->broadcast(c, ts, root);
        return bytes_of(ts);
    });
}

int dist_pg_barrier(dist_pg *pg) {
    SHIM_NEED_INT(pg);
    return run(pg, DIST_OP_BARRIER, {}, [&](const call &c) {
        pg->comm->barrier(c);
        return (int64_t)0;
    });
}

int dist_pg_synchronize(dist_pg *pg) {
    SHIM_NEED_INT(pg);
    SHIM_TRY(-1, {
        if (!pg->failure.empty()) throw shim_error(pg->failure);
        try {
            pg->comm->synchronize();
        } catch (const shim_error &e) {
            pg->failure = e.what();
            throw;
        }
        return 0;
    })
}

int dist_pg_start_sum(dist_pg *pg, tensor *const *tensors, int n, int root) {
    SHIM_NEED_INT(pg, tensors);
    if (!all_present(tensors, n)) return -1;
    dist_op op = root == DIST_ALL_RANKS ? DIST_OP_ALL_REDUCE : DIST_OP_REDUCE;
    return run(pg, op, {tensors, tensors + n}, [&](const call &c) {
        if (root != DIST_ALL_RANKS && (root < 0 || root >= pg->g.world))
            bad_argument(pg, c, "root " + std::to_string(root) + " is not a rank of " + std::to_string(pg->g.world));
        std::vector<at::Tensor> ts = checked_list(pg, c, tensors, n);
        if (!ts.empty()) pg->comm->start_sum(c, ts, root);
        pg->last_sum_op = op;
        return bytes_of(ts);
    });
}

// The wait's wall time counts with the kind of the last sum started (the launches counted their own).
int dist_pg_wait_sums(dist_pg *pg) {
    SHIM_NEED_INT(pg);
    SHIM_TRY(-1, {
        if (!pg->failure.empty()) throw shim_error(pg->failure);
        dist_impl::clock::time_point start = dist_impl::clock::now();
        try {
            pg->comm->wait_sums();
        } catch (const shim_error &e) {
            pg->failure = e.what();
            throw;
        }
        pg->stats.op[pg->last_sum_op].seconds += std::chrono::duration<double>(dist_impl::clock::now() - start).count();
        return 0;
    })
}

int dist_pg_sum_times(dist_pg *pg, double *comm_s, double *exposed_s) {
    SHIM_NEED_INT(pg, comm_s, exposed_s);
    SHIM_TRY(-1, {
        pg->comm->sum_times(comm_s, exposed_s);
        return 0;
    })
}

dist_pg_stats dist_pg_get_stats(const dist_pg *pg) { return pg ? pg->stats : dist_pg_stats{}; }

int dist_pg_wait_root(dist_pg *pg, int root, int64_t *value, double timeout_s) {
    SHIM_NEED_INT(pg, value);
    SHIM_TRY(-1, {
        if (!pg->failure.empty()) throw shim_error(pg->failure);
        if (root < 0 || root >= pg->g.world)
            throw shim_error("dist: root " + std::to_string(root) + " is not a rank of " + std::to_string(pg->g.world));
        std::string key = "clipc/root/" + std::to_string(++pg->root_waits);
        if (!pg->g.store) return 0;
        call c{"waiting for the lead rank", pg->root_waits, pg->where};
        try {
            std::string v = std::to_string(*value);
            if (pg->g.rank == root) {
                pg->g.store->set(key, std::vector<uint8_t>(v.begin(), v.end()));
                return 0;
            }
            auto wait = std::chrono::milliseconds((int64_t)(timeout_s * 1000.0 + 0.5));
            pg->g.store->wait({key}, wait);
            std::vector<uint8_t> got = pg->g.store->get(key);
            *value = std::stoll(std::string(got.begin(), got.end()));
        } catch (const std::exception &e) {
            pg->failure = pg->g.where_line(c) + ": rank " + std::to_string(root) + " did not answer: " + shim_what(e);
            throw shim_error(pg->failure);
        }
        return 0;
    })
}

}  // extern "C"
