#pragma once
// Routes and upstream endpoints (SPEC section 1). Pure: no Asio. Endpoint state is shared by
// every event-loop thread, so it is kept in atomics touched once per session, never per frame.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
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

    explicit endpoint(config::address addr) : address_(std::move(addr)), name_(address_.to_string()) {}

    const config::address& address() const { return address_; }
    const std::string& name() const { return name_; }

    int active_sessions() const { return active_.load(std::memory_order_relaxed); }
    void session_opened() { active_.fetch_add(1, std::memory_order_relaxed); }
    void session_closed() { active_.fetch_sub(1, std::memory_order_relaxed); }

    // Passive health: down after `failures_until_down` connection failures in a row,
    // offered again once `retry_after` has passed.
    void connect_failed(clock::time_point now);
    void connect_succeeded();
    bool up() const { return failures_.load(std::memory_order_relaxed) < failures_until_down; }
    bool available(clock::time_point now) const;

private:
    config::address address_;
    std::string name_;
    std::atomic<int> active_{0};
    std::atomic<int> failures_{0};
    std::atomic<std::int64_t> retry_at_ns_{0};
};

class upstream {
public:
    upstream(std::size_t index, const config::upstream_config& cfg);

    std::size_t index() const { return index_; }
    const std::string& name() const { return name_; }
    bool tls() const { return tls_; }
    std::chrono::milliseconds connect_timeout() const { return connect_timeout_; }
    std::vector<std::unique_ptr<endpoint>>& endpoints() { return endpoints_; }
    const std::vector<std::unique_ptr<endpoint>>& endpoints() const { return endpoints_; }

    // The available endpoint with the fewest active sessions (ties: the first); nullptr when
    // none is available. `rotation` breaks ties so equal endpoints share new sessions.
    endpoint* pick(clock::time_point now, std::uint64_t rotation = 0);

private:
    std::size_t index_;
    std::string name_;
    bool tls_;
    std::chrono::milliseconds connect_timeout_;
    std::vector<std::unique_ptr<endpoint>> endpoints_;
};

class router {
public:
    explicit router(const config::proxy_config& cfg);

    // Longest path prefix among the routes whose host matches (port and case ignored);
    // nullptr when nothing matches.
    upstream* match(std::string_view host, std::string_view path);

    std::vector<std::unique_ptr<upstream>>& upstreams() { return upstreams_; }
    const std::vector<std::unique_ptr<upstream>>& upstreams() const { return upstreams_; }

private:
    struct route {
        std::string host;  // lower case, no port; empty matches any host
        std::string prefix;
        upstream* target;
    };
    std::vector<std::unique_ptr<upstream>> upstreams_;
    std::vector<route> routes_;  // longest prefix first; host routes before host-less ones
};

// "Example.COM:8080" -> "example.com"; "[::1]:80" -> "::1".
std::string normalize_host(std::string_view host);

}  // namespace wsdrain::routing
