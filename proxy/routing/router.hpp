#pragma once
// Routes and upstream endpoints (SPEC sections 1 and 8). Pure: no Asio. Endpoint state is
// shared by every event-loop thread, so it is kept in atomics touched once per session or per
// health check, never per frame.
//
// A router is immutable once built; a config reload builds a new one. The state that must
// outlive a reload (an endpoint's sessions, health and drain; an upstream's held upgrades and
// metrics slot) lives in objects the new router takes over from the old one by name, so a
// session keeps its endpoint alive through shared ownership whatever the reload did.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "config/config.hpp"

namespace wsdrain::routing {

using clock = std::chrono::steady_clock;

class endpoint {
public:
    static constexpr int failures_until_down = 3;
    static constexpr std::chrono::seconds retry_after{5};

    endpoint(std::string upstream_name, std::size_t metrics_slot, config::address addr)
        : address_(std::move(addr)),
          name_(address_.to_string()),
          upstream_name_(std::move(upstream_name)),
          metrics_slot_(metrics_slot) {}

    const config::address& address() const { return address_; }
    const std::string& name() const { return name_; }
    const std::string& upstream_name() const { return upstream_name_; }
    // The index of its upstream in the per-thread metric shards.
    std::size_t metrics_slot() const { return metrics_slot_; }

    int active_sessions() const { return active_.load(std::memory_order_relaxed); }
    void session_opened() { active_.fetch_add(1, std::memory_order_relaxed); }
    void session_closed() { active_.fetch_sub(1, std::memory_order_relaxed); }

    // Passive health, while no health check is configured: down after `failures_until_down`
    // connection failures in a row, offered again once `retry_after` has passed.
    void connect_failed(clock::time_point now);
    void connect_succeeded();

    // Active health: once checked, only the checks decide (passive failures are ignored).
    // Each result returns true when it changed whether the endpoint is up.
    void set_checked(bool checked) { checked_.store(checked, std::memory_order_relaxed); }
    bool checked() const { return checked_.load(std::memory_order_relaxed); }
    bool check_passed(unsigned healthy_threshold);
    bool check_failed(unsigned unhealthy_threshold);

    // Healthy by whichever rule applies (wsdrain_upstream_endpoint_up).
    bool up() const;
    // Drained: no new sessions until undrained, or until it comes back up after being down
    // (a restarted backend passing its health check again).
    bool drained() const { return drained_.load(std::memory_order_relaxed); }
    void set_drained(bool d) { drained_.store(d, std::memory_order_relaxed); }
    // May take a new session now: undrained and up, or down but due for a retry.
    bool available(clock::time_point now) const;

private:
    config::address address_;
    std::string name_;
    std::string upstream_name_;
    std::size_t metrics_slot_;
    std::atomic<int> active_{0};
    std::atomic<int> failures_{0};
    std::atomic<std::int64_t> retry_at_ns_{0};
    std::atomic<bool> checked_{false};
    std::atomic<bool> checked_up_{true};
    std::atomic<unsigned> streak_{0};  // check results in a row that disagree with checked_up_
    std::atomic<bool> drained_{false};
};

// What an upstream keeps across reloads besides its endpoints.
struct upstream_state {
    explicit upstream_state(std::size_t slot) : metrics_slot(slot) {}
    const std::size_t metrics_slot;
    std::atomic<std::uint64_t> held{0};  // upgrades waiting for an endpoint, on every thread
};

class upstream {
public:
    upstream(const config::upstream_config& cfg, std::shared_ptr<upstream_state> state,
             std::vector<std::shared_ptr<endpoint>> endpoints);

    const std::string& name() const { return config_.name; }
    const config::upstream_config& config() const { return config_; }
    std::size_t metrics_slot() const { return state_->metrics_slot; }
    upstream_state& state() const { return *state_; }
    const std::shared_ptr<upstream_state>& shared_state() const { return state_; }
    const std::vector<std::shared_ptr<endpoint>>& endpoints() const { return endpoints_; }
    const std::shared_ptr<endpoint>* find(std::string_view endpoint_name) const;

    // The available endpoint with the fewest active sessions (ties: the first); nullptr when
    // none is available. `rotation` breaks ties so equal endpoints share new sessions.
    const std::shared_ptr<endpoint>* pick(clock::time_point now, std::uint64_t rotation = 0) const;

private:
    config::upstream_config config_;
    std::shared_ptr<upstream_state> state_;
    std::vector<std::shared_ptr<endpoint>> endpoints_;
};

class router {
public:
    // Gives the metrics slot of an upstream name (the same name always the same slot).
    using slot_allocator = std::function<std::size_t(const std::string&)>;

    // Slots in config order (0, 1, 2...): for tests and a first start.
    explicit router(const config::proxy_config& cfg);
    // A router for `cfg` that takes over the state of `previous`'s upstreams and endpoints of
    // the same names and addresses.
    router(const config::proxy_config& cfg, const router* previous, const slot_allocator& slot_of);

    // Longest path prefix among the routes whose host matches (port and case ignored);
    // nullptr when nothing matches.
    const upstream* match(std::string_view host, std::string_view path) const;

    const std::vector<std::unique_ptr<upstream>>& upstreams() const { return upstreams_; }
    const upstream* find(std::string_view name) const;

private:
    struct route {
        std::string host;  // lower case, no port; empty matches any host
        std::string prefix;
        const upstream* target;
    };
    std::vector<std::unique_ptr<upstream>> upstreams_;
    std::vector<route> routes_;  // longest prefix first; host routes before host-less ones
};

// "Example.COM:8080" -> "example.com"; "[::1]:80" -> "::1".
std::string normalize_host(std::string_view host);

}  // namespace wsdrain::routing
