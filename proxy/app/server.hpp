#pragma once
// The running proxy: its event-loop threads, listeners, routes and metrics. main.cpp only
// parses the command line and drives this; the integration tests run it in-process.

#include <boost/asio/ip/tcp.hpp>

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "admin/admin.hpp"
#include "app/drain_shell.hpp"
#include "config/config.hpp"
#include "health/checker.hpp"
#include "http/front.hpp"
#include "metrics/metrics.hpp"
#include "net/tls.hpp"
#include "net/worker.hpp"
#include "routing/router.hpp"

namespace wsdrain::app {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

inline constexpr const char* version = "0.1.0";

// Where a reload gets the config: the file read again with the command line applied, or
// the errors that make it unusable.
struct config_source_result {
    std::optional<config::proxy_config> config;
    std::vector<std::string> errors;
};
using config_source = std::function<config_source_result()>;

class server {
public:
    explicit server(config::proxy_config cfg);
    ~server();

    // Binds every listener and starts the threads. Throws std::runtime_error on failure.
    void start();
    // Closes the listeners, ends every session at once and joins the threads.
    void stop();

    // The drain (SPEC section 2). A signal, from any thread: the first drains, a second
    // forces. `on_exit` is called (on an event loop) when the process should exit 0.
    void signal() { drain_->start_from_signal(); }
    void on_exit(std::function<void()> f) { drain_->on_exit = std::move(f); }
    // SIGHUP, from any thread: reload() on loop 0, its result logged.
    void reload_from_signal();
    // Loop 0 (POST /reload). Reads the config from the source again and applies routes,
    // upstreams, limits, keepalive and drain settings to new requests and sessions; open
    // sessions go on untouched. Also reads tls.cert and tls.key again. A config with errors
    // changes nothing: 400 with the errors. Keys only a restart can change are named.
    asio::awaitable<admin::hook_reply> reload();
    // Without a source (in-process tests that set none) a reload re-applies the current config.
    void set_config_source(config_source s) { source_ = std::move(s); }
    // Reads tls.cert and tls.key again for new connections; on error the old ones stay and
    // the error is logged. False on error or without TLS.
    bool reload_tls();
    drain_shell& drain() { return *drain_; }

    std::uint16_t listen_port() const { return listen_port_; }
    std::uint16_t admin_port() const { return admin_port_; }
    unsigned threads() const { return static_cast<unsigned>(workers_.size()); }
    metrics::registry& metrics() { return *metrics_; }
    net::worker& worker(unsigned i) { return *workers_[i]; }

    std::string metrics_text() const;
    bool healthy() const;

    // Loop 0: drain (or undrain) every endpoint of `upstream`, or only `endpoint` (SPEC section 8).
    asio::awaitable<admin::hook_reply> set_drained(std::string upstream, std::optional<std::string> endpoint,
                                                   bool drained);
    // Loop 0: the JSON status of one upstream ("" when there is none by that name), or of all.
    std::string upstream_json(std::string_view name) const;
    std::string upstreams_json() const;

private:
    tcp::acceptor bind(net::worker& w, const config::address& addr, bool reuse_port);
    // Publishes `next` to every loop and waits until each has it (loop 0).
    asio::awaitable<void> publish(const std::shared_ptr<const http::live_config>& next);
    // Any thread: every loop's held upgrades look for an endpoint again.
    void wake_held();
    std::string upstream_json(const routing::upstream& u) const;

    // Order matters: members are destroyed bottom-up. The event loops (workers_) go before
    // everything a suspended coroutine or handler they destroy may still touch, and the
    // listeners go before the loops they are registered with.
    config::proxy_config config_;  // as at start: listen, threads, admin and tls stay so
    config_source source_;
    std::unique_ptr<metrics::registry> metrics_;
    std::shared_ptr<const http::live_config> live_;  // loop 0's view of the config in force
    std::uint64_t live_generation_ = 0;               // of live_, counting reloads
    std::unique_ptr<net::tls_contexts> tls_;
    std::unique_ptr<health::checker> health_;
    std::unique_ptr<http::front_context> front_;
    admin::hooks admin_hooks_;
    std::unique_ptr<std::atomic<std::int64_t>[]> heartbeats_;  // per worker, steady ns
    std::vector<std::unique_ptr<net::worker>> workers_;
    std::unique_ptr<drain_shell> drain_;
    std::vector<std::unique_ptr<tcp::acceptor>> acceptors_;  // one per worker
    std::unique_ptr<tcp::acceptor> admin_acceptor_;
    std::vector<std::thread> threads_;
    std::uint16_t listen_port_ = 0;
    std::uint16_t admin_port_ = 0;
};

}  // namespace wsdrain::app
