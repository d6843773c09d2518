#pragma once
// The client-facing HTTP/1.1 server: one coroutine per connection reads requests, routes
// them, proxies plain requests with streamed bodies, and turns upgrade requests into
// relay::tunnel sessions once the backend answered 101.

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>

#include "config/config.hpp"
#include "net/client_sessions.hpp"
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

// State every connection of every thread shares; read-mostly.
struct front_context {
    front_context(const config::proxy_config& c, routing::router& r, net::tls_contexts& t)
        : config(c), router(r), tls(t) {}

    const config::proxy_config& config;
    routing::router& router;
    net::tls_contexts& tls;                 // the listener's TLS (when config.tls) and TLS to backends
    std::atomic<std::int64_t> sessions{0};  // open WebSocket sessions, for limits.max_sessions
    net::client_sessions per_client;        // for limits.max_sessions_per_client
    std::atomic<bool> refusing{false};      // draining past its pre-delay: new requests get 503
};

// Serves one client connection on worker `w`'s thread until it closes or upgrades.
asio::awaitable<void> serve_connection(net::worker& w, front_context& ctx, tcp::socket socket);

// Accepts connections on `acceptor` (owned by the caller) until it is closed.
asio::awaitable<void> accept_loop(net::worker& w, front_context& ctx, tcp::acceptor& acceptor);

}  // namespace wsdrain::http
