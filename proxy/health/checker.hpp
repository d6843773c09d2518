#pragma once
// Active health checks (SPEC section 8): every endpoint of an upstream with a health_check is
// probed each `interval`, on one event loop: a TCP connect (type tcp), or a GET of `path`
// answered 2xx (type http, over TLS when the upstream is), each within `timeout`. The results
// go into the endpoint (routing::endpoint::check_passed/failed), which applies the thresholds.

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>

#include <cstdint>
#include <functional>
#include <memory>

#include "config/config.hpp"
#include "routing/router.hpp"

namespace wsdrain::net {
class tls_contexts;
}

namespace wsdrain::health {

namespace asio = boost::asio;

class checker {
public:
    // `on_change(e)` is called on the checker's loop when an endpoint goes up or down.
    checker(asio::io_context& ctx, net::tls_contexts& tls, std::function<void(const routing::endpoint&)> on_change);

    // On the checker's loop. Checks the endpoints of `r` from now on, and no others: the
    // checks of the previous router end at their next turn. The first check of each endpoint
    // is at once.
    void start(const routing::router& r);
    // Ends every check at its next turn.
    void stop() { ++generation_; }

    // One probe of `e`: true when it passed.
    static asio::awaitable<bool> probe(const routing::endpoint& e, const config::health_check_config& check,
                                       bool tls, net::tls_contexts& contexts);

private:
    asio::awaitable<void> run(std::shared_ptr<routing::endpoint> e, config::health_check_config check, bool tls,
                              std::uint64_t generation);

    asio::io_context& ctx_;
    net::tls_contexts& tls_;
    std::function<void(const routing::endpoint&)> on_change_;
    std::uint64_t generation_ = 0;
};

}  // namespace wsdrain::health
