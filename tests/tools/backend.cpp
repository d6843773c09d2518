#include "backend.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>

#include <charconv>

namespace wsdrain::testing {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = beast::http;
namespace websocket = beast::websocket;
using tcp = asio::ip::tcp;
constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

struct backend::shared {
    backend_options options;
    tcp::acceptor acceptor;
    std::mutex mutex;
    std::vector<session_end> ended;
    std::vector<std::string> requests;
    std::atomic<int>* open;
    std::atomic<int>* started;
    std::atomic<std::uint64_t>* flooded;
};

namespace {

std::uint64_t fnv1a(std::string_view s, std::uint64_t h = 1469598103934665603ULL) {
    for (unsigned char c : s) h = (h ^ c) * 1099511628211ULL;
    return h;
}

asio::awaitable<void> websocket_session(backend::shared& sh, beast::tcp_stream stream,
                                        bhttp::request<bhttp::string_body> req) {
    websocket::stream<beast::tcp_stream> ws{std::move(stream)};
    if (sh.options.deflate) {
        websocket::permessage_deflate pmd;
        pmd.server_enable = true;
        ws.set_option(pmd);
    }
    std::string chosen;
    for (const auto& offered : bhttp::token_list{req[bhttp::field::sec_websocket_protocol]})
        for (const auto& known : sh.options.subprotocols)
            if (chosen.empty() && beast::iequals(offered, known)) chosen = known;
    ws.set_option(websocket::stream_base::decorator([&](websocket::response_type& res) {
        res.set("X-Backend", sh.options.name);
        if (!chosen.empty()) res.set(bhttp::field::sec_websocket_protocol, chosen);
    }));
    ws.set_option(websocket::stream_base::timeout{std::chrono::seconds(30), websocket::stream_base::none(), false});
    ws.next_layer().expires_never();
    auto [aec] = co_await ws.async_accept(req, use_tuple);
    if (aec) co_return;
    sh.started->fetch_add(1);
    sh.open->fetch_add(1);
    session_end end;
    for (;;) {
        beast::flat_buffer msg;
        auto [ec, n] = co_await ws.async_read(msg, use_tuple);
        if (ec) {
            end.close_frame = ec == websocket::error::closed;
            if (end.close_frame) {
                end.code = static_cast<std::uint16_t>(ws.reason().code);
                end.reason = std::string(ws.reason().reason.c_str());
            }
            break;
        }
        ++end.messages;
        const std::string text = beast::buffers_to_string(msg.data());
        if (end.messages == 1) end.first_message = text.substr(0, 64);
        std::uint64_t seq = 0;
        if (text.starts_with("SEQ ") && std::from_chars(text.data() + 4, text.data() + text.size(), seq).ec == std::errc{})
            end.last_sequence = std::max(end.last_sequence, seq);
        if (text.starts_with("flood ")) {
            std::uint64_t count = 0;
            std::from_chars(text.data() + 6, text.data() + text.size(), count);
            std::string chunk(64 * 1024, 'x');
            ws.binary(true);
            ws.auto_fragment(false);  // one 64 KiB frame a message
            for (std::uint64_t i = 0; i < count; ++i) {
                auto [wec, wn] = co_await ws.async_write(asio::buffer(chunk), use_tuple);
                if (wec) break;
                sh.flooded->fetch_add(chunk.size());
            }
            continue;
        }
        if (text == "close-me") {  // the backend begins the close
            co_await ws.async_close(websocket::close_reason(static_cast<websocket::close_code>(4000), "backend says bye"), use_tuple);
            continue;  // the next read returns closed
        }
        ws.text(ws.got_text());
        auto [wec, wn] = co_await ws.async_write(msg.data(), use_tuple);
        if (wec) break;
    }
    sh.open->fetch_sub(1);
    std::lock_guard lock(sh.mutex);
    sh.ended.push_back(end);
}

asio::awaitable<void> http_session(backend::shared& sh, tcp::socket socket) {
    beast::tcp_stream stream{std::move(socket)};
    beast::flat_buffer buffer;
    for (;;) {
        bhttp::request_parser<bhttp::string_body> parser;
        parser.body_limit(256 * 1024 * 1024);
        stream.expires_after(std::chrono::seconds(60));
        auto [ec, n] = co_await bhttp::async_read(stream, buffer, parser, use_tuple);
        if (ec) co_return;
        auto req = parser.release();
        if (websocket::is_upgrade(req)) {
            co_await websocket_session(sh, std::move(stream), std::move(req));
            co_return;
        }
        bhttp::response<bhttp::string_body> res{bhttp::status::ok, req.version()};
        res.set("X-Backend", sh.options.name);
        for (const char* h : {"X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host"})
            res.set(std::string("Echo-") + h, req[h]);
        const std::string_view target{req.target().data(), req.target().size()};
        if (req.method() == bhttp::verb::post || req.method() == bhttp::verb::put) {
            res.body() = std::to_string(req.body().size()) + " " + std::to_string(fnv1a(req.body()));
        } else if (target.starts_with("/page.html")) {
            res.set(bhttp::field::content_type, "text/html");
            res.body() = R"(<!doctype html><title>wsdrain</title><script>
const ws = new WebSocket(new URLSearchParams(location.search).get("ws"));
const report = (q) => fetch("/report?" + q, {mode: "no-cors"});
ws.onopen = () => { report("open=1"); setInterval(() => ws.readyState === 1 && ws.send("tick"), 100); };
ws.onclose = (e) => report("code=" + e.code + "&clean=" + e.wasClean + "&reason=" + encodeURIComponent(e.reason));
</script>)";
        } else if (target.starts_with("/bytes/")) {
            std::size_t count = 0;
            std::from_chars(target.data() + 7, target.data() + target.size(), count);
            res.body().assign(count, 'b');
        } else {
            res.body() = sh.options.name + " " + std::string(target);
        }
        if (req.method() == bhttp::verb::get) {
            std::lock_guard lock(sh.mutex);
            sh.requests.emplace_back(target);
        }
        res.keep_alive(req.keep_alive());
        res.prepare_payload();
        auto [wec, wn] = co_await bhttp::async_write(stream, res, use_tuple);
        if (wec || !res.keep_alive()) co_return;
    }
}

asio::awaitable<void> accept_loop(backend::shared& sh) {
    for (;;) {
        auto [ec, socket] = co_await sh.acceptor.async_accept(use_tuple);
        if (ec) co_return;
        asio::co_spawn(sh.acceptor.get_executor(), http_session(sh, std::move(socket)), asio::detached);
    }
}

}  // namespace

backend::backend(backend_options o)
    : shared_(new shared{std::move(o), tcp::acceptor(context_), {}, {}, {}, &open_, &started_, &flooded_}) {
    tcp::endpoint ep{asio::ip::make_address(shared_->options.host), shared_->options.port};
    shared_->acceptor.open(ep.protocol());
    shared_->acceptor.set_option(tcp::acceptor::reuse_address(true));
    shared_->acceptor.bind(ep);
    shared_->acceptor.listen();
    port_ = shared_->acceptor.local_endpoint().port();
    asio::co_spawn(context_, accept_loop(*shared_), asio::detached);
    thread_ = std::thread([this] { context_.run(); });
}

backend::~backend() { stop(); }

void backend::stop() {
    if (!thread_.joinable()) return;
    context_.stop();
    thread_.join();
}

std::vector<session_end> backend::ended() const {
    std::lock_guard lock(shared_->mutex);
    return shared_->ended;
}

std::vector<std::string> backend::requests() const {
    std::lock_guard lock(shared_->mutex);
    return shared_->requests;
}

}  // namespace wsdrain::testing
