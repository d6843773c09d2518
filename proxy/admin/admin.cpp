#include "admin/admin.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http.hpp>

#include <cstdlib>
#include <optional>
#include <vector>

#include "admin/status_page.hpp"
#include "config/config.hpp"
#include "drain/partial.hpp"
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

// "timeout=2.5" in a query string, in milliseconds; nullopt when absent or malformed.
std::optional<std::chrono::milliseconds> timeout_param(std::string_view query) {
    for (std::size_t pos = 0; pos < query.size();) {
        const std::size_t end = std::min(query.find('&', pos), query.size());
        const std::string_view kv = query.substr(pos, end - pos);
        if (kv.starts_with("timeout=")) {
            const std::string v(kv.substr(8));
            char* rest = nullptr;
            const double seconds = std::strtod(v.c_str(), &rest);
            if (v.empty() || *rest != '\0' || !(seconds >= 0) || seconds > 3600) return std::nullopt;
            return std::chrono::milliseconds(static_cast<std::int64_t>(seconds * 1000));
        }
        pos = end + 1;
    }
    return std::chrono::seconds(60);  // absent: one minute
}

response json(bhttp::status s, std::string body) { return text(s, std::move(body), "application/json"); }

response from_hook(const hook_reply& r) {
    const bool is_json = r.body.starts_with('{');
    return text(static_cast<bhttp::status>(r.status), r.body,
                is_json ? "application/json" : "text/plain; charset=utf-8");
}

// %XX escapes decoded ("%5B%3A%3A1%5D%3A9000" is "[::1]:9000"); nullopt when malformed.
std::optional<std::string> percent_decoded(std::string_view text) {
    std::string out;
    for (std::size_t i = 0; i < text.size(); ++i) {
        if (text[i] != '%') {
            out += text[i];
            continue;
        }
        if (i + 2 >= text.size()) return std::nullopt;
        const auto hex = [](char c) -> int {
            if (c >= '0' && c <= '9') return c - '0';
            if (c >= 'a' && c <= 'f') return c - 'a' + 10;
            if (c >= 'A' && c <= 'F') return c - 'A' + 10;
            return -1;
        };
        const int hi = hex(text[i + 1]), lo = hex(text[i + 2]);
        if (hi < 0 || lo < 0) return std::nullopt;
        out += static_cast<char>(hi * 16 + lo);
        i += 2;
    }
    return out;
}

// "/upstreams/app/endpoints/10.0.0.1:9000/drain" -> {"app", "10.0.0.1:9000", "drain"}.
struct upstream_path {
    std::string upstream;
    std::optional<std::string> endpoint;
    std::string action;  // "", "drain" or "undrain"
};

std::optional<upstream_path> parse_upstream_path(std::string_view path) {
    constexpr std::string_view prefix = "/upstreams/";
    if (!path.starts_with(prefix)) return std::nullopt;
    std::vector<std::string_view> parts;
    for (std::string_view rest = path.substr(prefix.size());;) {
        const std::size_t slash = rest.find('/');
        parts.push_back(rest.substr(0, slash));
        if (slash == std::string_view::npos) break;
        rest.remove_prefix(slash + 1);
    }
    std::vector<std::string> decoded;
    for (const auto part : parts) {
        auto d = percent_decoded(part);
        if (!d || d->empty()) return std::nullopt;
        decoded.push_back(*std::move(d));
    }
    upstream_path out;
    out.upstream = decoded[0];
    if (decoded.size() == 1) return out;
    if (decoded.size() == 2 && (decoded[1] == "drain" || decoded[1] == "undrain")) {
        out.action = decoded[1];
        return out;
    }
    if (decoded.size() == 4 && decoded[1] == "endpoints" && (decoded[3] == "drain" || decoded[3] == "undrain")) {
        out.endpoint = decoded[2];
        out.action = decoded[3];
        return out;
    }
    return std::nullopt;
}

asio::awaitable<response> route(const bhttp::request<bhttp::string_body>& req, const asio::ip::address& peer,
                                const hooks& h) {
    const std::string_view target{req.target().data(), req.target().size()};
    const auto q = target.find('?');
    const std::string_view path = target.substr(0, q);
    const std::string_view query = q == std::string_view::npos ? std::string_view{} : target.substr(q + 1);
    const bool get = req.method() == bhttp::verb::get || req.method() == bhttp::verb::head;
    const bool post = req.method() == bhttp::verb::post;

    const auto upstream_op = parse_upstream_path(path);
    const bool mutating = post && (path == "/drain" || path == "/reload" || (upstream_op && !upstream_op->action.empty()));
    if (mutating) {
        const auto auth = req[bhttp::field::authorization];
        if (!authorized(peer, {auth.data(), auth.size()}, h.token))
            co_return text(bhttp::status::forbidden,
                           "POST " + std::string(path) + " needs a loopback peer or the admin bearer token\n");
    }
    if (path == "/reload" && post) co_return from_hook(co_await h.reload());
    if (upstream_op && !upstream_op->action.empty() && post) {
        co_return from_hook(co_await h.set_drained(upstream_op->upstream, upstream_op->endpoint,
                                                   upstream_op->action == "drain"));
    }
    if (path == "/drain" && post) {
        if (!query.empty()) {
            const partial_drain_request p = parse_partial_drain(query);
            if (!p.error.empty()) co_return text(bhttp::status::bad_request, p.error + "\n");
            const std::string refused = co_await h.start_partial_drain(p.fraction, p.spread);
            if (!refused.empty()) co_return text(bhttp::status::conflict, refused + "\n");
            co_return json(bhttp::status::accepted, h.drain_status());
        }
        h.start_drain();
        co_return json(bhttp::status::accepted, h.drain_status());
    }
    if (!get) {
        const bool known = path == "/" || path == "/metrics" || path == "/healthz" || path == "/readyz" || path == "/drain" ||
                           path == "/drain/wait" || path == "/reload" || path == "/upstreams" || upstream_op;
        co_return text(known ? bhttp::status::method_not_allowed : bhttp::status::not_found,
                       known ? "method not allowed\n" : "not found\n");
    }
    if (path == "/") co_return text(bhttp::status::ok, status_page, "text/html; charset=utf-8");
    if (path == "/metrics")
        co_return text(bhttp::status::ok, h.metrics(), "text/plain; version=0.0.4; charset=utf-8");
    if (path == "/healthz")
        co_return h.healthy() ? text(bhttp::status::ok, "ok\n")
                              : text(bhttp::status::service_unavailable, "event loop stalled\n");
    if (path == "/readyz")
        co_return h.ready() ? text(bhttp::status::ok, "ready\n")
                            : text(bhttp::status::service_unavailable, "draining\n");
    if (path == "/drain") co_return json(bhttp::status::ok, h.drain_status());
    if (path == "/reload" || (upstream_op && !upstream_op->action.empty()))
        co_return text(bhttp::status::method_not_allowed, "method not allowed: use POST\n");
    if (path == "/upstreams") co_return json(bhttp::status::ok, h.upstreams_status());
    if (upstream_op && upstream_op->action.empty()) {
        const std::string status = h.upstream_status(upstream_op->upstream);
        if (status.empty()) co_return text(bhttp::status::not_found, "no upstream named '" + upstream_op->upstream + "'\n");
        co_return json(bhttp::status::ok, status + "\n");
    }
    if (path == "/drain/wait") {
        const auto timeout = timeout_param(query);
        if (!timeout) co_return text(bhttp::status::bad_request, "timeout must be seconds between 0 and 3600\n");
        const bool drained = co_await h.wait_drained(*timeout);
        co_return json(drained ? bhttp::status::ok : bhttp::status::gateway_timeout, h.drain_status());
    }
    co_return text(bhttp::status::not_found, "not found\n");
}

asio::awaitable<void> serve(tcp::socket socket, const hooks& h) {
    beast::error_code pec;
    const asio::ip::address peer = socket.remote_endpoint(pec).address();
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
        stream.expires_never();  // /drain/wait may take a while; it bounds itself
        response res = co_await route(req, peer, h);
        res.keep_alive(req.keep_alive());
        res.prepare_payload();
        if (req.method() == bhttp::verb::head) res.body().clear();
        stream.expires_after(std::chrono::seconds(30));
        auto [wec, wn] = co_await bhttp::async_write(stream, res, use_tuple);
        if (wec || !res.keep_alive()) break;
    }
    beast::error_code ec;
    stream.socket().shutdown(tcp::socket::shutdown_send, ec);
}

}  // namespace

partial_drain_request parse_partial_drain(std::string_view query) {
    partial_drain_request r;
    auto fail = [&r](std::string why) {
        r.error = std::move(why);
        return r;
    };
    bool have_fraction = false;
    for (std::size_t pos = 0; pos <= query.size();) {
        const std::size_t end = std::min(query.find('&', pos), query.size());
        const std::string_view kv = query.substr(pos, end - pos);
        pos = end + 1;
        if (kv.empty()) continue;
        const std::size_t eq = kv.find('=');
        const std::string_view key = kv.substr(0, eq);
        const std::string value{eq == std::string_view::npos ? std::string_view{} : kv.substr(eq + 1)};
        if (key == "fraction") {
            if (have_fraction) return fail("fraction is given twice");
            const auto f = drain::parse_fraction(value);
            if (!f) return fail("fraction must be a decimal above 0 and at most 1, like 0.25 (got '" + value + "')");
            r.fraction = *f;
            have_fraction = true;
        } else if (key == "spread") {
            if (r.spread) return fail("spread is given twice");
            const auto d = config::parse_duration(value);
            if (!d) return fail("spread must be a duration like 5s, 500ms or 2m (got '" + value + "')");
            r.spread = *d;
        } else {
            return fail("unknown parameter '" + std::string(key) + "': POST /drain takes fraction and spread");
        }
    }
    if (!have_fraction)
        return fail("a partial drain needs fraction=F (above 0, at most 1); POST /drain without parameters drains all");
    return r;
}

bool authorized(const asio::ip::address& peer, std::string_view authorization, const std::string& token) {
    if (peer.is_loopback()) return true;
    if (peer.is_v6() && peer.to_v6().is_v4_mapped() &&
        asio::ip::make_address_v4(asio::ip::v4_mapped, peer.to_v6()).is_loopback())
        return true;
    if (token.empty()) return false;
    const std::string expected = "Bearer " + token;
    // Constant time in the length of the expected value: no early exit on the first mismatch.
    unsigned char diff = authorization.size() == expected.size() ? 0 : 1;
    for (std::size_t i = 0; i < expected.size(); ++i)
        diff |= static_cast<unsigned char>(expected[i] ^ (i < authorization.size() ? authorization[i] : 0));
    return diff == 0;
}

asio::awaitable<void> accept_loop(net::worker& w, tcp::acceptor& acceptor, const hooks& h) {
    asio::steady_timer backoff{w.context()};
    for (;;) {
        auto [ec, socket] = co_await acceptor.async_accept(use_tuple);
        if (ec == asio::error::operation_aborted || !acceptor.is_open()) co_return;
        if (ec) {  // out of descriptors: wait in the backlog rather than spin (as http::start_accepting does)
            backoff.expires_after(std::chrono::milliseconds(100));
            co_await backoff.async_wait(use_tuple);
            continue;
        }
        asio::co_spawn(w.context(), serve(std::move(socket), h), asio::detached);
    }
}

}  // namespace wsdrain::admin
