#include "health/checker.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>

#include <openssl/ssl.h>

#include <vector>

#include "log/log.hpp"
#include "net/stream.hpp"
#include "net/tls.hpp"

namespace wsdrain::health {

namespace beast = boost::beast;
namespace bhttp = beast::http;
using tcp = asio::ip::tcp;
using boost::system::error_code;
constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

checker::checker(asio::io_context& ctx, net::tls_contexts& tls,
                 std::function<void(const routing::endpoint&)> on_change)
    : ctx_(ctx), tls_(tls), on_change_(std::move(on_change)) {}

void checker::start(const routing::router& r) {
    const std::uint64_t generation = ++generation_;
    for (const auto& u : r.upstreams()) {
        const auto& check = u->config().health_check;
        for (const auto& e : u->endpoints()) {
            e->set_checked(check.has_value());
            if (check) asio::co_spawn(ctx_, run(e, *check, u->config().tls, generation), asio::detached);
        }
    }
}

asio::awaitable<void> checker::run(std::shared_ptr<routing::endpoint> e, config::health_check_config check, bool tls,
                                   std::uint64_t generation) {
    asio::steady_timer timer{ctx_};
    auto next = std::chrono::steady_clock::now();
    while (generation == generation_) {
        const bool passed = co_await probe(*e, check, tls, tls_);
        if (generation != generation_) break;  // a reload replaced this check while it ran
        const bool was_up = e->up();
        const bool changed = passed ? e->check_passed(check.healthy_threshold) : e->check_failed(check.unhealthy_threshold);
        if (changed) {
            if (was_up) {
                log::warn("endpoint down: health check failed",
                          {{"upstream", e->upstream_name()}, {"endpoint", e->name()},
                           {"failures", check.unhealthy_threshold}});
            } else {
                log::info("endpoint up: health check passed",
                          {{"upstream", e->upstream_name()}, {"endpoint", e->name()}});
            }
            on_change_(*e);
        }
        // Every interval from the start of the last check; a slow probe does not shift them.
        next += check.interval;
        const auto now = std::chrono::steady_clock::now();
        if (next < now) next = now;
        timer.expires_at(next);
        co_await timer.async_wait(use_tuple);
    }
}

asio::awaitable<bool> checker::probe(const routing::endpoint& e, const config::health_check_config& check, bool tls,
                                     net::tls_contexts& contexts) {
    const auto executor = co_await asio::this_coro::executor;
    net::stream stream{tcp::socket(executor)};
    const auto& a = e.address();
    // One deadline for the whole probe: resolve, connect, TLS, request and answer.
    const auto deadline = std::chrono::steady_clock::now() + check.timeout;
    error_code ec;
    std::vector<tcp::endpoint> targets;
    const auto address = asio::ip::make_address(a.host, ec);
    const bool by_name = static_cast<bool>(ec);
    if (!by_name) {
        targets.emplace_back(address, a.port);
    } else {
        tcp::resolver resolver(executor);
        asio::steady_timer limit{executor, deadline};
        limit.async_wait([&resolver](const error_code& tec) {
            if (!tec) resolver.cancel();
        });
        const std::string port = std::to_string(a.port);
        auto [rec, results] = co_await resolver.async_resolve(a.host, port, use_tuple);
        limit.cancel();
        for (const auto& r : results) targets.push_back(r.endpoint());
    }
    if (targets.empty()) co_return false;
    stream.tcp_layer().expires_at(deadline);
    auto [cec, connected] = co_await stream.tcp_layer().async_connect(targets, use_tuple);
    if (cec) co_return false;
    if (check.type == config::health_check_type::tcp) {
        stream.socket().close(ec);
        co_return true;
    }
    if (tls) {
        stream.wrap_tls(contexts.client());
        stream.tcp_layer().expires_at(deadline);
        if (by_name) SSL_set_tlsext_host_name(stream.tls()->native_handle(), a.host.c_str());  // SNI
        auto [hec] = co_await stream.tls()->async_handshake(asio::ssl::stream_base::client, use_tuple);
        if (hec) co_return false;
    }
    bhttp::request<bhttp::empty_body> req{bhttp::verb::get, check.path, 11};
    req.set(bhttp::field::host, e.name());
    req.set(bhttp::field::user_agent, "wsdrain-health-check");
    req.set(bhttp::field::connection, "close");
    stream.expires_after(deadline - std::chrono::steady_clock::now());
    auto [wec, wn] = co_await bhttp::async_write(stream, req, use_tuple);
    if (wec) co_return false;
    beast::flat_buffer buffer;
    bhttp::response_parser<bhttp::empty_body> parser;
    parser.skip(true);  // the status line and headers are enough
    auto [rec, rn] = co_await bhttp::async_read_header(stream, buffer, parser, use_tuple);
    if (rec) co_return false;
    const unsigned status = parser.get().result_int();
    stream.socket().close(ec);
    co_return status >= 200 && status < 300;
}

}  // namespace wsdrain::health
