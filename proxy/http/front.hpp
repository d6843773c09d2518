#pragma once
// The client-facing HTTP/1.1 server: one coroutine per connection reads requests, routes
// them, proxies plain requests with streamed bodies, and turns upgrade requests into
// relay::tunnel sessions once the backend answered 101.

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <vector>

#include "config/config.hpp"
#include "net/client_sessions.hpp"
#include "net/waiters.hpp"
#include "net/worker.hpp"
#include "routing/router.hpp"

namespace wsdrain::net {
class tls_contexts;
}

namespace wsdrain::http {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

// How long any step of a plain request or response body may go without progress.
inline constexpr std::chrono::seconds body_idle_timeout{60};
// How long accepting pauses after an error such as running out of file descriptors.
inline constexpr std::chrono::milliseconds accept_retry{100};

// What a reload replaces: the config and the router built from it. Immutable once
// published; a request takes the current one when it starts and keeps it to its end.
struct live_config {
    live_config(config::proxy_config c, const routing::router* previous, const routing::router::slot_allocator& slot_of)
        : config(std::move(c)), router(config, previous, slot_of) {}
    const config::proxy_config config;
    const routing::router router;
};

// State every connection of every thread shares; read-mostly.
struct front_context {
    front_context(std::shared_ptr<const live_config> first, unsigned threads, bool listener_tls, net::tls_contexts& t)
        : live(threads, first), live_generation(threads, 0), held(threads), tls_listener(listener_tls), tls(t) {}

    // The config in force, one copy per event loop, each written only on its own loop, with
    // the reload it came from (a loop never goes back to an older one).
    std::vector<std::shared_ptr<const live_config>> live;
    std::vector<std::uint64_t> live_generation;
    // Upgrades waiting for an endpoint, per event loop: waking them cancels their timers.
    std::vector<net::waiters> held;
    const bool tls_listener;                // the listener speaks TLS (fixed at start)
    net::tls_contexts& tls;                 // the listener's TLS (when tls_listener) and TLS to backends
    std::atomic<std::int64_t> sessions{0};  // open WebSocket sessions, for limits.max_sessions
    net::client_sessions per_client;        // for limits.max_sessions_per_client
    std::atomic<bool> refusing{false};      // draining past its pre-delay: new requests get 503
};

// On worker `w`'s thread: the held upgrades of that loop look for an endpoint again.
void wake_held(net::worker& w, front_context& ctx);

// Serves one client connection (from `remote`) on worker `w`'s thread until it closes or upgrades.
asio::awaitable<void> serve_connection(net::worker& w, front_context& ctx, tcp::socket socket, tcp::endpoint remote);

// Accepts connections on `acceptor` on worker `w`'s thread, until it is closed there. The
// caller owns it, and has made it non-blocking, with TCP_NODELAY for the connections to inherit.
void start_accepting(net::worker& w, front_context& ctx, tcp::acceptor& acceptor);

}  // namespace wsdrain::http
