#pragma once
// The admin listener (SPEC section 3): served by an event loop of the proxy itself, not by a
// thread of its own. Plain HTTP/1.1 with keep-alive; unknown paths get 404.

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>

#include <chrono>
#include <functional>
#include <optional>
#include <string_view>
#include <string>

#include "net/worker.hpp"

namespace wsdrain::admin {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

// An answer a hook gives whole: status and JSON (or text) body.
struct hook_reply {
    unsigned status = 200;
    std::string body;
};

struct hooks {
    std::function<std::string()> metrics;       // Prometheus text
    std::function<bool()> healthy;              // every event loop answers
    std::function<bool()> ready;                // serving (not draining)
    std::function<std::string()> drain_status;  // the JSON of GET /drain
    std::function<void()> start_drain;          // POST /drain
    // POST /drain?fraction=F&spread=D: "" once started, else why not (answered 409).
    std::function<asio::awaitable<std::string>(double, std::optional<std::chrono::milliseconds>)> start_partial_drain;
    std::function<asio::awaitable<bool>(std::chrono::milliseconds)> wait_drained;  // true once drained
    std::function<asio::awaitable<hook_reply>()> reload;                         // POST /reload
    // POST /upstreams/{name}[/endpoints/{host:port}]/drain and .../undrain.
    std::function<asio::awaitable<hook_reply>(const std::string&, const std::optional<std::string>&, bool)> set_drained;
    std::function<std::string(std::string_view)> upstream_status;  // GET /upstreams/{name}; "" unknown
    std::function<std::string()> upstreams_status;                  // GET /upstreams
    std::string token;                          // admin.token; empty: loopback peers only
};

// The query of POST /drain?fraction=F&spread=D: F in (0, 1], D a duration (absent: the
// configured drain.spread). `error` says what is wrong, for a 400.
struct partial_drain_request {
    double fraction = 0;
    std::optional<std::chrono::milliseconds> spread;
    std::string error;
};
partial_drain_request parse_partial_drain(std::string_view query);

// May this peer call a mutating endpoint? Loopback peers always; others with the token.
bool authorized(const asio::ip::address& peer, std::string_view authorization, const std::string& token);

asio::awaitable<void> accept_loop(net::worker& w, tcp::acceptor& acceptor, const hooks& h);

}  // namespace wsdrain::admin
