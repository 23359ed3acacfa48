// The Gloo backend of shim/dist.h: libtorch's c10d ProcessGroupGloo over CPU tensors. Every
// collective is waited for here, in slices, so that a rank stuck longer than announce_after()
// records that it reached the collective and the group's timeout is ours (Gloo's own is set later,
// as a backstop). Gloo has no reduce-scatter: it is an all-to-all followed by a local sum.
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>

#include <atomic>
#include <cstdlib>
#include <utility>

#include "shim/dist_comm.hpp"

namespace dist_impl {

namespace {

using work_ptr = decltype(std::declval<c10d::ProcessGroupGloo &>().barrier());

bool is_loopback(const std::string &addr) {
    return addr.rfind("127.", 0) == 0 || addr == "localhost" || addr == "::1";
}

// The network device Gloo listens on: GLOO_SOCKET_IFNAME's interface when set, the loopback for
// a run on one machine, else the address this host's name resolves to.
std::shared_ptr<::gloo::transport::Device> make_device(const std::string &master_addr) {
    const char *ifname = std::getenv("GLOO_SOCKET_IFNAME");
    if (ifname && *ifname) return c10d::ProcessGroupGloo::createDeviceForInterface(ifname);
    if (is_loopback(master_addr)) return c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1");
    return c10d::ProcessGroupGloo::createDefaultDevice();
}

// Gloo's message without the "[file:line] " it starts with.
std::string gloo_message(const std::exception &e) {
    std::string m = shim_what(e);
    size_t end = m.find("] ");
    return m.rfind("[", 0) == 0 && end != std::string::npos ? m.substr(end + 2) : m;
}

// Waits up to `slice` for w: true when it completed (rethrowing its error), false when it is still running.
bool wait_for(work_ptr &w, std::chrono::milliseconds slice) {
    try {
        w->wait(slice);
        return true;
    } catch (const std::exception &) {
        if (!w->isCompleted()) return false;
    }
    w->wait();  // completed with an error: rethrows it
    return true;
}

// One asynchronous sum (dist_pg_start_sum): its works and when the last of them completed.
struct started_sum {
    call c;
    std::vector<work_ptr> works;
    clock::time_point start;
    std::shared_ptr<std::atomic<int64_t>> done_ns;  // the latest completion (clock ticks in ns), 0: none yet
};

int64_t ns_of(clock::time_point t) {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
}

// Records in done_ns when w completes (its future's callback, on Gloo's thread).
void note_completion(const work_ptr &w, const std::shared_ptr<std::atomic<int64_t>> &done_ns) {
    w->getFuture()->addCallback([done_ns](c10::ivalue::Future &) {
        int64_t now = ns_of(clock::now()), seen = done_ns->load();
        while (seen < now && !done_ns->compare_exchange_weak(seen, now)) {
        }
    });
}

class gloo_comm : public comm {
    group &g;
    c10::intrusive_ptr<c10d::ProcessGroupGloo> pg;
    std::vector<started_sum> sums;  // started since the last wait_sums
    double comm_s = 0, exposed_s = 0;  // of the last wait_sums

    // Gloo's own timeout, a backstop behind the one wait_all() enforces.
    std::chrono::milliseconds backstop() const { return g.timeout + std::chrono::seconds(2); }

    void wait_all(const call &c, std::vector<work_ptr> works) {
        clock::time_point start = clock::now(), deadline = start + g.timeout;
        clock::time_point announce_at = start + g.announce_after();
        bool announced = false;
        for (work_ptr &w : works) {
            for (;;) {
                clock::time_point now = clock::now();
                if (!announced && now >= announce_at) {
                    g.announce(c);
                    announced = true;
                }
                clock::time_point until = announced ? deadline : std::min(announce_at, deadline);
                auto slice = std::chrono::duration_cast<std::chrono::milliseconds>(std::max(until - now, clock::duration(0)));
                try {
                    if (wait_for(w, slice + std::chrono::milliseconds(1))) break;
                } catch (const std::exception &e) {
                    throw shim_error(g.describe(c, "failed: " + gloo_message(e)));
                }
                if (clock::now() >= deadline) throw shim_error(g.describe_timeout(c));
            }
        }
    }

    // Starts one collective per tensor (Gloo takes several tensors as replicas of one), then waits.
    template <class F>
    void each_tensor(const call &c, std::vector<at::Tensor> &tensors, F start) {
        std::vector<work_ptr> works;
        for (at::Tensor &t : tensors) {
            std::vector<at::Tensor> one{t};
            works.push_back(start(one));
        }
        wait_all(c, std::move(works));
    }

  public:
    gloo_comm(group &g, const std::string &master_addr) : g(g) {
        auto options = c10d::ProcessGroupGloo::Options::create(backstop());
        options->devices.push_back(make_device(master_addr));
        pg = c10::make_intrusive<c10d::ProcessGroupGloo>(g.store, g.rank, g.world, options);
    }

    void all_reduce(const call &c, std::vector<at::Tensor> &tensors) override {
        c10d::AllreduceOptions o;
        o.timeout = backstop();
        each_tensor(c, tensors, [&](std::vector<at::Tensor> &one) { return pg->allreduce(one, o); });
    }

    void all_gather(const call &c, at::Tensor &out, at::Tensor &in) override {
        c10d::AllgatherOptions o;
        o.timeout = backstop();
        int64_t rows = in.size(0);
        std::vector<std::vector<at::Tensor>> outs(1);
        for (int r = 0; r < g.world; r++) outs[0].push_back(out.narrow(0, r * rows, rows));
        std::vector<at::Tensor> ins{in};
        wait_all(c, {pg->allgather(outs, ins, o)});
    }

    void reduce_scatter(const call &c, at::Tensor &out, at::Tensor &in) override {
        c10d::AllToAllOptions o;
        o.timeout = backstop();
        at::Tensor received = at::empty_like(in);  // (R*B, ...): block r is rank r's rows for this rank
        std::vector<int64_t> equal_split;
        wait_all(c, {pg->alltoall_base(received, in, equal_split, equal_split, o)});
        out.copy_(received.reshape({g.world, out.numel()}).sum(0).view(out.sizes()));
    }

    void broadcast(const call &c, std::vector<at::Tensor> &tensors, int root) override {
        c10d::BroadcastOptions o;
        o.rootRank = root;
        o.timeout = backstop();
        each_tensor(c, tensors, [&](std::vector<at::Tensor> &one) { return pg->broadcast(one, o); });
    }

    void barrier(const call &c) override {
        c10d::BarrierOptions o;
        o.timeout = backstop();
        wait_all(c, {pg->barrier(o)});
    }

    void synchronize() override {}

    void start_sum(const call &c, std::vector<at::Tensor> &tensors, int root) override {
        started_sum s{c, {}, clock::now(), std::make_shared<std::atomic<int64_t>>(0)};
        for (at::Tensor &t : tensors) {
            std::vector<at::Tensor> one{t};
            if (root < 0) {
                c10d::AllreduceOptions o;
                o.timeout = backstop();
                s.works.push_back(pg->allreduce(one, o));
            } else {
                c10d::ReduceOptions o;
                o.rootRank = root;
                o.timeout = backstop();
                s.works.push_back(pg->reduce(one, o));
            }
            note_completion(s.works.back(), s.done_ns);
        }
        sums.push_back(std::move(s));
    }

    void wait_sums() override {
        std::vector<started_sum> now_waiting;
        now_waiting.swap(sums);
        clock::time_point called = clock::now();
        int64_t last = 0;
        for (started_sum &s : now_waiting) {
            wait_all(s.c, s.works);
            // A future's callback may run just after wait() returned: then now is the completion.
            int64_t done = s.done_ns->load();
            last = std::max(last, done > 0 ? done : ns_of(clock::now()));
        }
        comm_s = exposed_s = 0;
        if (now_waiting.empty()) return;
        comm_s = (double)(last - ns_of(now_waiting.front().start)) / 1e9;
        exposed_s = std::max(0.0, (double)(last - ns_of(called)) / 1e9);
    }

    void sum_times(double *comm, double *exposed) override {
        *comm = comm_s;
        *exposed = exposed_s;
    }

    c10::optional<at::Device> device() const override { return at::Device(at::kCPU); }
};

}  // namespace

std::unique_ptr<comm> make_gloo_comm(group &g, const std::string &master_addr) {
    return std::make_unique<gloo_comm>(g, master_addr);
}

}  // namespace dist_impl
