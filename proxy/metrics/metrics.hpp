#pragma once
// Every metric of wsdrain (SPEC section 6) is declared here.
//
// The data path never takes a lock to count: each event-loop thread owns a `thread_shard`
// that only it writes (relaxed atomic stores, no read-modify-write), and a session adds its
// frame and byte counts to the shard once per read batch. A scrape sums the shards.

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace wsdrain::metrics {

enum class direction : std::uint8_t { to_backend, to_client };
inline constexpr std::size_t direction_count = 2;

enum class upgrade_result : std::uint8_t { ok, rejected_draining, rejected_limit, backend_refused, backend_error };
inline constexpr std::size_t upgrade_result_count = 5;

enum class close_reason : std::uint8_t { client, backend, drain_clean, drain_forced, idle, error };
inline constexpr std::size_t close_reason_count = 6;

enum class drop_reason : std::uint8_t { after_close, peer_gone };
inline constexpr std::size_t drop_reason_count = 2;

const char* to_string(direction d);
const char* to_string(upgrade_result r);
const char* to_string(close_reason r);
const char* to_string(drop_reason r);

// A value with a single writer. Readers on other threads see a recent value.
class counter {
public:
    void add(std::uint64_t n = 1) noexcept { v_.store(v_.load(std::memory_order_relaxed) + n, std::memory_order_relaxed); }
    std::uint64_t value() const noexcept { return v_.load(std::memory_order_relaxed); }

private:
    std::atomic<std::uint64_t> v_{0};
};

class gauge {
public:
    void add(std::int64_t n) noexcept { v_.store(v_.load(std::memory_order_relaxed) + n, std::memory_order_relaxed); }
    std::int64_t value() const noexcept { return v_.load(std::memory_order_relaxed); }

private:
    std::atomic<std::int64_t> v_{0};
};

// Fixed-bucket histogram in seconds; one writer.
template <std::size_t N>
class histogram {
public:
    explicit histogram(const std::array<double, N>& bounds) : bounds_(&bounds) {}
    void observe(double seconds) noexcept {
        std::size_t i = 0;
        while (i < N && seconds > (*bounds_)[i]) ++i;
        buckets_[i].add();
        sum_micros_.add(static_cast<std::uint64_t>(seconds * 1e6));
    }
    const std::array<double, N>& bounds() const { return *bounds_; }
    std::uint64_t bucket(std::size_t i) const { return buckets_[i].value(); }  // i == N: +Inf
    double sum() const { return static_cast<double>(sum_micros_.value()) / 1e6; }

private:
    const std::array<double, N>* bounds_;
    std::array<counter, N + 1> buckets_{};
    counter sum_micros_;
};

inline constexpr std::array<double, 12> session_duration_bounds{1, 5, 15, 30, 60, 300, 900, 1800, 3600, 7200, 21600, 86400};
inline constexpr std::array<double, 11> close_handshake_bounds{0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5};

struct upstream_shard {
    std::array<counter, upgrade_result_count> upgrades;
    std::array<counter, close_reason_count> sessions_closed;
    gauge sessions_active;
    gauge upgrades_held;  // waiting for an endpoint (SPEC section 8)
    histogram<session_duration_bounds.size()> session_duration{session_duration_bounds};
};

struct thread_shard {
    explicit thread_shard(std::size_t upstream_slots) : upstreams(upstream_slots) {}

    std::array<counter, direction_count> frames;
    std::array<counter, direction_count> bytes;
    std::array<std::array<counter, drop_reason_count>, direction_count> frames_dropped;
    gauge http_requests_in_flight;
    counter accept_paused;  // accepting paused on an error (out of file descriptors)
    // Sessions that ended while a drain was running: after a complete close handshake on
    // both legs (whoever began it), or otherwise. Read by GET /drain, not exported.
    counter drain_closed_clean;
    counter drain_closed_forced;
    // Sessions a partial drain asked to close that ended while serving, the same two ways.
    counter partial_closed_clean;
    counter partial_closed_forced;
    histogram<close_handshake_bounds.size()> close_handshake{close_handshake_bounds};
    // Indexed by an upstream's metrics slot; sized once, for every name the process may see.
    std::vector<upstream_shard> upstreams;
};

// Values set from the control side (drain state, endpoint health), read at scrape time.
struct drain_view {
    int state = 0;  // 0 serving, 1 draining, 2 drained
    double started_timestamp = 0;
    double sessions_at_start = 0;
    double sessions_remaining = 0;
    double progress = 0;
    double duration_seconds = 0;
};

struct endpoint_view {
    std::string upstream;
    std::string endpoint;
    bool up = true;
};

class registry {
public:
    // Upstream names have a slot each, for the life of the process: a reload may add names
    // (an upstream removed by a reload keeps its series, its sessions_active going to 0).
    static constexpr std::size_t max_upstream_names = 256;

    registry(std::vector<std::string> upstream_names, unsigned threads, std::string version);
    ~registry();

    thread_shard& shard(unsigned thread) { return *shards_[thread]; }
    // The slot of `name`, given a new one if needed; nullopt when all are taken. Loop 0 only.
    std::optional<std::size_t> slot_of(const std::string& name);
    // Config reloads by result (wsdrain_config_reloads_total). Loop 0 only.
    void count_reload(bool ok) { (ok ? reloads_ok_ : reloads_error_).add(); }

    // Sums sessions_active over the threads.
    std::int64_t sessions_active() const;

    // The Prometheus text exposition of every metric.
    std::string serialize(const drain_view& drain, const std::vector<endpoint_view>& endpoints) const;

private:
    std::vector<std::string> upstream_names_;  // by slot; read at scrape time on loop 0 too
    std::vector<std::unique_ptr<thread_shard>> shards_;
    std::string version_;
    counter reloads_ok_, reloads_error_;
};

}  // namespace wsdrain::metrics
