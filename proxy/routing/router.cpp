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

bool endpoint::available(clock::time_point now) const {
    return up() || ns(now) >= retry_at_ns_.load(std::memory_order_relaxed);
}

upstream::upstream(std::size_t index, const config::upstream_config& cfg)
    : index_(index), name_(cfg.name), tls_(cfg.tls), connect_timeout_(cfg.connect_timeout) {
    for (const auto& a : cfg.endpoints) endpoints_.push_back(std::make_unique<endpoint>(a));
}

endpoint* upstream::pick(clock::time_point now, std::uint64_t rotation) {
    endpoint* best = nullptr;
    const std::size_t n = endpoints_.size();
    for (std::size_t i = 0; i < n; ++i) {
        endpoint* e = endpoints_[(i + rotation) % n].get();
        if (!e->available(now)) continue;
        if (!best || e->active_sessions() < best->active_sessions()) best = e;
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

router::router(const config::proxy_config& cfg) {
    for (const auto& u : cfg.upstreams) upstreams_.push_back(std::make_unique<upstream>(upstreams_.size(), u));
    for (const auto& r : cfg.routes) {
        auto it = std::find_if(upstreams_.begin(), upstreams_.end(), [&](auto& u) { return u->name() == r.upstream; });
        if (it == upstreams_.end()) continue;  // config::validate() rejects this before we get here
        routes_.push_back({normalize_host(r.host), r.path_prefix, it->get()});
    }
    std::stable_sort(routes_.begin(), routes_.end(), [](const route& a, const route& b) {
        if (a.host.empty() != b.host.empty()) return !a.host.empty();
        return a.prefix.size() > b.prefix.size();
    });
}

upstream* router::match(std::string_view host, std::string_view path) {
    const std::string h = normalize_host(host);
    for (const route& r : routes_)
        if ((r.host.empty() || r.host == h) && path.starts_with(r.prefix)) return r.target;
    return nullptr;
}

}  // namespace wsdrain::routing
