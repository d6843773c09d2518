#include "routing/router.hpp"

#include <algorithm>
#include <cctype>

namespace wsdrain::routing {

namespace {
std::int64_t ns(clock::time_point t) {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
}
}  // namespace

void endpoint::connect_failed(clock::time_point now) {
    const int n = failures_.fetch_add(1, std::memory_order_relaxed) + 1;
    if (n >= failures_until_down) retry_at_ns_.store(ns(now + retry_after), std::memory_order_relaxed);
}

void endpoint::connect_succeeded() { failures_.store(0, std::memory_order_relaxed); }

// The health checker is the only writer of checked_up_ and streak_.
bool endpoint::check_passed(unsigned healthy_threshold) {
    if (checked_up_.load(std::memory_order_relaxed)) {
        streak_.store(0, std::memory_order_relaxed);
        return false;
    }
    const unsigned n = streak_.load(std::memory_order_relaxed) + 1;
    if (n < healthy_threshold) {
        streak_.store(n, std::memory_order_relaxed);
        return false;
    }
    streak_.store(0, std::memory_order_relaxed);
    drained_.store(false, std::memory_order_relaxed);  // back after a restart: its drain is over
    checked_up_.store(true, std::memory_order_relaxed);
    return true;
}

bool endpoint::check_failed(unsigned unhealthy_threshold) {
    if (!checked_up_.load(std::memory_order_relaxed)) {
        streak_.store(0, std::memory_order_relaxed);
        return false;
    }
    const unsigned n = streak_.load(std::memory_order_relaxed) + 1;
    if (n < unhealthy_threshold) {
        streak_.store(n, std::memory_order_relaxed);
        return false;
    }
    streak_.store(0, std::memory_order_relaxed);
    checked_up_.store(false, std::memory_order_relaxed);
    return true;
}

bool endpoint::up() const {
    if (checked()) return checked_up_.load(std::memory_order_relaxed);
    return failures_.load(std::memory_order_relaxed) < failures_until_down;
}

bool endpoint::available(clock::time_point now) const {
    if (drained()) return false;
    if (checked()) return checked_up_.load(std::memory_order_relaxed);
    return up() || ns(now) >= retry_at_ns_.load(std::memory_order_relaxed);
}

upstream::upstream(const config::upstream_config& cfg, std::shared_ptr<upstream_state> state,
                   std::vector<std::shared_ptr<endpoint>> endpoints)
    : config_(cfg), state_(std::move(state)), endpoints_(std::move(endpoints)) {}

const std::shared_ptr<endpoint>* upstream::find(std::string_view endpoint_name) const {
    for (const auto& e : endpoints_)
        if (e->name() == endpoint_name) return &e;
    return nullptr;
}

const std::shared_ptr<endpoint>* upstream::pick(clock::time_point now, std::uint64_t rotation) const {
    const std::shared_ptr<endpoint>* best = nullptr;
    const std::size_t n = endpoints_.size();
    for (std::size_t i = 0; i < n; ++i) {
        const std::shared_ptr<endpoint>& e = endpoints_[(i + rotation) % n];
        if (!e->available(now)) continue;
        if (!best || e->active_sessions() < (*best)->active_sessions()) best = &e;
    }
    return best;
}

std::string normalize_host(std::string_view host) {
    if (!host.empty() && host.front() == '[') {
        const auto end = host.find(']');
        host = host.substr(1, end == std::string_view::npos ? std::string_view::npos : end - 1);
    } else if (const auto colon = host.rfind(':'); colon != std::string_view::npos &&
                                                   host.find(':') == colon) {
        host = host.substr(0, colon);  // one colon: a port; several: a bare IPv6 address
    }
    std::string out(host);
    std::transform(out.begin(), out.end(), out.begin(), [](unsigned char c) { return std::tolower(c); });
    return out;
}

router::router(const config::proxy_config& cfg)
    : router(cfg, nullptr, [n = std::size_t{0}](const std::string&) mutable { return n++; }) {}

router::router(const config::proxy_config& cfg, const router* previous, const slot_allocator& slot_of) {
    for (const auto& u : cfg.upstreams) {
        const upstream* before = previous ? previous->find(u.name) : nullptr;
        auto state = before ? before->shared_state() : std::make_shared<upstream_state>(slot_of(u.name));
        std::vector<std::shared_ptr<endpoint>> endpoints;
        for (const auto& a : u.endpoints) {
            const auto* kept = before ? before->find(a.to_string()) : nullptr;
            if (std::any_of(endpoints.begin(), endpoints.end(), [&](auto& e) { return e->address() == a; })) continue;
            endpoints.push_back(kept ? *kept : std::make_shared<endpoint>(u.name, state->metrics_slot, a));
        }
        upstreams_.push_back(std::make_unique<upstream>(u, std::move(state), std::move(endpoints)));
    }
    for (const auto& r : cfg.routes) {
        const upstream* target = find(r.upstream);
        if (!target) continue;  // config::validate() rejects this before we get here
        routes_.push_back({normalize_host(r.host), r.path_prefix, target});
    }
    std::stable_sort(routes_.begin(), routes_.end(), [](const route& a, const route& b) {
        if (a.host.empty() != b.host.empty()) return !a.host.empty();
        return a.prefix.size() > b.prefix.size();
    });
}

const upstream* router::find(std::string_view name) const {
    for (const auto& u : upstreams_)
        if (u->name() == name) return u.get();
    return nullptr;
}

const upstream* router::match(std::string_view host, std::string_view path) const {
    const std::string h = normalize_host(host);
    for (const route& r : routes_)
        if ((r.host.empty() || r.host == h) && path.starts_with(r.prefix)) return r.target;
    return nullptr;
}

}  // namespace wsdrain::routing
