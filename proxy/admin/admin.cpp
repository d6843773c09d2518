#include "admin/admin.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http.hpp>

#include "log/log.hpp"

namespace wsdrain::admin {

namespace beast = boost::beast;
namespace bhttp = beast::http;
constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

namespace {

using response = bhttp::response<bhttp::string_body>;

response text(bhttp::status s, std::string body, const char* type = "text/plain; charset=utf-8") {
    response r{s, 11};
    r.set(bhttp::field::server, "wsdrain");
    r.set(bhttp::field::content_type, type);
    r.set(bhttp::field::cache_control, "no-store");
    r.body() = std::move(body);
    return r;
}

response route(const bhttp::request<bhttp::string_body>& req, const hooks& h) {
    const std::string_view target{req.target().data(), req.target().size()};
    const std::string_view path = target.substr(0, target.find('?'));
    const bool get = req.method() == bhttp::verb::get || req.method() == bhttp::verb::head;
    auto only_get = [&](auto&& make) { return get ? make() : text(bhttp::status::method_not_allowed, "use GET\n"); };
    if (path == "/metrics")
        return only_get([&] { return text(bhttp::status::ok, h.metrics(), "text/plain; version=0.0.4; charset=utf-8"); });
    if (path == "/healthz")
        return only_get([&] { return h.healthy() ? text(bhttp::status::ok, "ok\n")
                                                 : text(bhttp::status::service_unavailable, "event loop stalled\n"); });
    if (path == "/readyz")
        return only_get([&] { return h.ready() ? text(bhttp::status::ok, "ready\n")
                                               : text(bhttp::status::service_unavailable, "draining\n"); });
    return text(bhttp::status::not_found, "not found\n");
}

asio::awaitable<void> serve(tcp::socket socket, const hooks& h) {
    beast::tcp_stream stream{std::move(socket)};
    beast::flat_buffer buffer;
    for (;;) {
        bhttp::request_parser<bhttp::string_body> parser;
        parser.header_limit(16384);
        parser.body_limit(65536);
        stream.expires_after(std::chrono::seconds(30));
        auto [ec, n] = co_await bhttp::async_read(stream, buffer, parser, use_tuple);
        if (ec) break;
        const auto& req = parser.get();
        response res = route(req, h);
        res.keep_alive(req.keep_alive());
        res.prepare_payload();
        if (req.method() == bhttp::verb::head) res.body().clear();
        auto [wec, wn] = co_await bhttp::async_write(stream, res, use_tuple);
        if (wec || !res.keep_alive()) break;
    }
    beast::error_code ec;
    stream.socket().shutdown(tcp::socket::shutdown_send, ec);
}

}  // namespace

asio::awaitable<void> accept_loop(net::worker& w, tcp::acceptor& acceptor, const hooks& h) {
    for (;;) {
        auto [ec, socket] = co_await acceptor.async_accept(use_tuple);
        if (ec == asio::error::operation_aborted || !acceptor.is_open()) co_return;
        if (ec) continue;
        asio::co_spawn(w.context(), serve(std::move(socket), h), asio::detached);
    }
}

}  // namespace wsdrain::admin
