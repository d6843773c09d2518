#include "http/front.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>

#include <openssl/ssl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <optional>
#include <span>

#include "codec/frame.hpp"
#include "http/forwarding.hpp"
#include "log/log.hpp"
#include "net/readable_wait.hpp"
#include "net/sockets.hpp"
#include "net/stream.hpp"
#include "net/tls.hpp"
#include "relay/tunnel.hpp"

namespace wsdrain::http {

namespace beast = boost::beast;
namespace bhttp = beast::http;
using boost::system::error_code;
constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

namespace {

using clock = std::chrono::steady_clock;

// How many times an upgrade whose endpoint was drained under it is routed anew.
constexpr int max_reroutes = 3;
// A held upgrade whose endpoint refused the connection tries again after this, at the soonest.
constexpr std::chrono::milliseconds held_retry_pause{200};
// What the first recv of a new connection takes: a whole request header in most cases, as
// nginx's client_header_buffer_size (1k); a longer one is read on by Beast.
constexpr std::size_t first_read_size = 1024;
// What each recv of a backend's answer to an upgrade takes (a 101 is some 150 bytes).
constexpr std::size_t answer_read_size = 1024;

struct header_deadline {
    bool armed = true;   // the read it guards is still under way
    bool fired = false;  // it cancelled that read
};

// A connection to one backend endpoint, kept for the next request of the same client.
struct upstream_connection {
    // Built in its place: a tcp_stream allocates a new state when it is moved.
    upstream_connection(tcp::socket socket, std::shared_ptr<routing::endpoint> e)
        : stream(std::move(socket)), endpoint(std::move(e)) {}

    net::stream stream;
    beast::flat_buffer buffer;
    std::shared_ptr<routing::endpoint> endpoint;
    bool connected = false;
    bool request_sent = false;  // the upgrade request went out with the connect
};

// What a non-blocking socket takes of `bytes` at once. A send that would block took 0 bytes;
// any other failure is `ec`.
std::size_t send_now(int fd, std::string_view bytes, error_code& ec) {
    const ssize_t n = ::send(fd, bytes.data(), bytes.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n >= 0) return static_cast<std::size_t>(n);
    if (errno != EAGAIN && errno != EWOULDBLOCK) ec = error_code(errno, boost::system::system_category());
    return 0;
}

// Receives what a non-blocking socket holds, up to `size` bytes, into `buffer`: the count, 0 at
// the peer's EOF, or -1 with errno (EAGAIN: nothing there).
ssize_t recv_into(int fd, beast::flat_buffer& buffer, std::size_t size) {
    const auto space = buffer.prepare(size);
    const ssize_t got = ::recv(fd, space.data(), space.size(), MSG_DONTWAIT);
    if (got > 0) buffer.commit(static_cast<std::size_t>(got));
    return got;
}

// Trivially destructible on purpose: GCC 12 may destroy a temporary with a destructor
// twice when it appears in a co_await expression, so no such temporary is ever put there.
struct error_reply {
    bhttp::status status;
    std::string_view text;
    bool retry_after = false;
};

asio::awaitable<void> send_error(net::stream& client, const error_reply& e, unsigned version, bool keep_alive) {
    bhttp::response<bhttp::string_body> res{e.status, version};
    res.set(bhttp::field::server, "wsdrain");
    res.set(bhttp::field::content_type, "text/plain; charset=utf-8");
    if (e.retry_after) res.set(bhttp::field::retry_after, "5");
    res.body().assign(e.text).append("\n");
    res.keep_alive(keep_alive);
    res.prepare_payload();
    client.expires_after(body_idle_timeout);
    co_await bhttp::async_write(client, res, use_tuple);
}

// Moves a message body from `in` to `out` piece by piece; neither side is buffered whole.
template <bool is_request>
asio::awaitable<error_code> relay_body(net::stream& in, beast::flat_buffer& in_buffer,
                                       bhttp::parser<is_request, bhttp::buffer_body>& parser, net::stream& out,
                                       bhttp::serializer<is_request, bhttp::buffer_body>& serializer) {
    std::array<char, 16384> chunk;
    auto& body = parser.get().body();
    do {
        if (!parser.is_done()) {
            body.data = chunk.data();
            body.size = chunk.size();
            in.expires_after(body_idle_timeout);
            auto [ec, n] = co_await bhttp::async_read(in, in_buffer, parser, use_tuple);
            if (ec == bhttp::error::need_buffer) ec = {};
            if (ec) co_return ec;
            body.size = chunk.size() - body.size;
            // An empty piece (the end of an empty chunked body) goes as no data: the serializer
            // would write it as a chunk of size 0, which is a last chunk of its own.
            body.data = body.size > 0 ? chunk.data() : nullptr;
            body.more = !parser.is_done();
        } else {
            body.data = nullptr;
            body.size = 0;
            body.more = false;
        }
        out.expires_after(body_idle_timeout);
        auto [ec, n] = co_await bhttp::async_write(out, serializer, use_tuple);
        if (ec == bhttp::error::need_buffer) ec = {};
        if (ec) co_return ec;
    } while (!parser.is_done() || !serializer.is_done());
    co_return error_code{};
}

// An address as text. IPv4 without inet_ntop, which formats through sprintf: this runs for
// every connection.
std::string address_text(const asio::ip::address& a) {
    if (!a.is_v4()) return a.to_string();
    const auto bytes = a.to_v4().to_bytes();
    char text[16];
    char* end = text;
    for (std::size_t i = 0; i < bytes.size(); ++i) {
        if (i) *end++ = '.';
        end = std::to_chars(end, text + sizeof text, bytes[i]).ptr;
    }
    return std::string(text, end);
}

class connection final : public net::session_link {
public:
    // `remote` is the client's address as accept() gave it.
    connection(net::worker& w, front_context& ctx, tcp::socket socket, const tcp::endpoint& remote)
        : worker_(w), ctx_(ctx), client_(std::move(socket)) {
        w.connections().push_back(*this);
        client_info_.address = address_text(remote.address());
        client_address_ = client_info_.address + ":" + std::to_string(remote.port());
        // TCP_NODELAY came from the listener (server::bind sets it there).
    }

    asio::awaitable<void> run();

    void drain_close(std::uint16_t, const std::string&, net::drain_kind) override {
        closing_ = true;  // the response in flight says Connection: close
        if (idle_) close_now();
    }
    void force_close() override { close_now(); }

private:
    void close_now() {
        error_code ec;
        client_.socket().close(ec);
        if (upstream_) upstream_->stream.socket().close(ec);
    }
    // The TLS handshake of a listener with TLS; false when it failed (the connection ends).
    asio::awaitable<bool> accept_tls();
    // A new plain connection's first request is usually in its socket by the time the
    // connection is accepted (a client sends it right after connecting). One recv and the
    // parser take it here, without the header timer or a read through the reactor. True, with
    // `ec` and `n` as async_read_header would give them, when the header is complete or bad;
    // false when it is not all there, with `n` the bytes of it the parser took: the rest of
    // what was read waits in buffer_ for async_read_header.
    bool read_header_now(bhttp::request_parser<bhttp::buffer_body>& parser, error_code& ec, std::size_t& n);
    bool keep_alive(bool client_wants) const { return client_wants && !closing_ && !ctx_.refusing; }
    asio::awaitable<bool> serve_plain(bhttp::request_parser<bhttp::buffer_body>& parser, const routing::upstream& up);
    asio::awaitable<void> serve_upgrade(bhttp::request_parser<bhttp::buffer_body>& parser, const routing::upstream& up);
    // Waits until `up` has an available endpoint or the config is reloaded, at most until
    // `until`; after a refused connect (`pause`) at least a moment, or until woken. True when
    // one may be there; false when the upgrade is to be refused (503).
    asio::awaitable<bool> hold(const routing::upstream& up, clock::time_point until, bool pause);
    // A connection to an endpoint of `up`. For a WebSocket session (`for_session`) the endpoint's
    // session count is raised at the pick, so that upgrades arriving together spread out; the
    // caller gives it back unless a tunnel takes the session.
    // `first_bytes` (an upgrade's request) go out with the connect where that saves a wait: a
    // connection that comes back connected with `request_sent` has written them.
    asio::awaitable<upstream_connection*> connect(const routing::upstream& up, bool reuse, bool for_session = false,
                                                  std::string_view first_bytes = {});
    // The header of the backend's answer to an upgrade request, into `rp`, within `timeout`
    // (then beast::error::timeout). From a plain backend it is read with recv after a wait in
    // the loop's deadline queue, as a tunnel reads; from a TLS one by Beast.
    asio::awaitable<error_code> read_answer(upstream_connection& conn, bhttp::response_parser<bhttp::buffer_body>& rp,
                                            std::chrono::milliseconds timeout);
    asio::awaitable<error_code> connect_sending(const tcp::endpoint& target, std::string_view bytes,
                                                std::chrono::milliseconds timeout);
    void count_upgrade(const routing::upstream& up, metrics::upgrade_result r) {
        worker_.stats().upstreams[up.metrics_slot()].upgrades[static_cast<std::size_t>(r)].add();
    }

    net::worker& worker_;
    front_context& ctx_;
    std::shared_ptr<const live_config> live_;  // the config of the request under way
    net::stream client_;
    beast::flat_buffer buffer_;
    client_info client_info_;
    std::string client_address_;
    std::optional<upstream_connection> upstream_;
    std::uint64_t requests_ = 0;  // request headers read on this connection
    bool idle_ = false;           // kept alive, waiting for the next request, nothing of it read
    bool closing_ = false;  // a drain asked this connection to close
    bool client_gone_ = false;  // the client left while its upgrade was held
};

asio::awaitable<bool> connection::accept_tls() {
    const auto context = ctx_.tls.server();  // the certificate as of now; a reload affects later connections
    client_.wrap_tls(*context);
    client_.expires_after(live_->config.limits.header_timeout);
    auto [ec] = co_await client_.tls()->async_handshake(asio::ssl::stream_base::server, use_tuple);
    if (ec) {
        log::debug("TLS handshake failed", {{"client", client_address_}, {"error", ec.message()}});
        co_return false;
    }
    co_return true;
}

bool connection::read_header_now(bhttp::request_parser<bhttp::buffer_body>& parser, error_code& ec, std::size_t& n) {
    if (requests_ > 0 || client_.tls() || buffer_.size() > 0) return false;
    auto& socket = client_.socket();
    if (const ssize_t got = recv_into(socket.native_handle(), buffer_, first_read_size); got <= 0) {
        // Not there yet: the read that follows waits for it instead of trying a recv first.
        // An end or an error is left for that read to find, and to answer as it does.
        if (got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) net::readable_wait::expect_no_input_yet(socket);
        return false;
    }
    n = parser.put(buffer_.data(), ec);
    buffer_.consume(n);  // the parser may have taken whole lines of a header it needs more of
    if (ec != bhttp::error::need_more) return true;
    ec = {};
    return false;
}

asio::awaitable<void> connection::run() {
    live_ = ctx_.live[worker_.index()];
    if (ctx_.tls_listener && !co_await accept_tls()) {
        client_.close();
        co_return;
    }
    for (;;) {
        live_ = ctx_.live[worker_.index()];  // a reload applies from the next request on
        const auto& limits = live_->config.limits;
        bhttp::request_parser<bhttp::buffer_body> parser;
        parser.header_limit(static_cast<std::uint32_t>(std::min<std::uint64_t>(limits.max_header_bytes, UINT32_MAX)));
        if (limits.max_body_bytes) parser.body_limit(limits.max_body_bytes);
        else parser.body_limit(boost::none);
        if (closing_) break;
        error_code ec;
        std::size_t n = 0;  // the header's size
        if (!read_header_now(parser, ec, n)) {
            // The header deadline cancels the read but keeps the socket, so that a 408 can still
            // be sent (tcp_stream's own timeout would close it). Its handler owns `deadline` and
            // touches the socket only while `armed`, which ends before this connection can.
            client_.expires_never();
            auto deadline = std::make_shared<header_deadline>();
            asio::steady_timer timer{worker_.context(), limits.header_timeout};
            timer.async_wait([deadline, &socket = client_.socket()](const error_code& tec) {
                if (tec || !deadline->armed) return;
                deadline->fired = true;
                error_code ignored;
                socket.cancel(ignored);
            });
            // Idle: a kept-alive connection between requests. A new one is not: its first request
            // may be on its way, and it gets an answer (503 while draining), not a silent close.
            idle_ = requests_ > 0 && buffer_.size() == 0;
            std::size_t more = 0;
            std::tie(ec, more) = co_await bhttp::async_read_header(client_, buffer_, parser, use_tuple);
            n += more;
            deadline->armed = false;
            timer.cancel();
            idle_ = false;
            if (deadline->fired) {
                if (buffer_.size() > 0) co_await send_error(client_, {bhttp::status::request_timeout, "request header timeout"}, 11, false);
                break;
            }
        }
        ++requests_;
        if (ec == asio::error::operation_aborted || ec == asio::error::bad_descriptor) break;  // closed by a drain
        if (ec == bhttp::error::end_of_stream || ec == asio::error::eof || ec == asio::error::connection_reset ||
            ec == asio::ssl::error::stream_truncated)
            break;
        // Beast holds the request line and the fields to header_limit each; `n` is the whole header.
        if (!ec && n > limits.max_header_bytes) ec = bhttp::error::header_limit;
        if (ec == bhttp::error::header_limit) {
            co_await send_error(client_, {bhttp::status::request_header_fields_too_large,
                                          "request header over limits.max_header_bytes"}, 11, false);
            break;
        }
        if (ec == bhttp::error::body_limit) {  // its Content-Length says so
            co_await send_error(client_, {bhttp::status::payload_too_large, "request body over limits.max_body_bytes"},
                                11, false);
            break;
        }
        if (ec) {
            const std::string why = "malformed request: " + ec.message();
            co_await send_error(client_, {bhttp::status::bad_request, why}, 11, false);
            break;
        }
        auto& req = parser.get();
        if (req.count(bhttp::field::transfer_encoding) && !parser.chunked()) {
            // RFC 9112 section 6.3: the body's length is unknown, and a backend may frame it otherwise.
            co_await send_error(client_, {bhttp::status::bad_request,
                                          "malformed request: Transfer-Encoding does not end in chunked"}, 11, false);
            break;
        }
        const std::string_view target{req.target().data(), req.target().size()};
        const routing::upstream* up = live_->router.match({req[bhttp::field::host].data(), req[bhttp::field::host].size()},
                                                  target.substr(0, target.find('?')));
        const bool upgrade = wants_websocket(req);
        if (!up) {
            co_await send_error(client_, {bhttp::status::not_found, "no route for this host and path"}, req.version(),
                                req.keep_alive() && !upgrade && parser.is_done());
            if (upgrade || !parser.is_done() || !req.keep_alive()) break;
            continue;
        }
        if (ctx_.refusing) {
            if (upgrade) count_upgrade(*up, metrics::upgrade_result::rejected_draining);
            co_await send_error(client_, {bhttp::status::service_unavailable, "draining", true}, req.version(), false);
            break;
        }
        if (upgrade) {
            co_await serve_upgrade(parser, *up);
            break;  // the socket now belongs to a tunnel, or the refusal closed it
        }
        if (!co_await serve_plain(parser, *up)) break;
    }
    if (client_.socket().is_open()) {
        error_code ec;
        if (client_.tls()) {  // close_notify, without waiting for the peer's
            SSL_set_shutdown(client_.tls()->native_handle(), SSL_RECEIVED_SHUTDOWN);
            client_.expires_after(std::chrono::seconds(1));
            std::tie(ec) = co_await client_.tls()->async_shutdown(use_tuple);
        }
        client_.socket().shutdown(tcp::socket::shutdown_send, ec);
        client_.close();
    }
}

asio::awaitable<upstream_connection*> connection::connect(const routing::upstream& up, bool reuse, bool for_session,
                                                          std::string_view first_bytes) {
    const auto now = clock::now();
    if (reuse && upstream_ && upstream_->connected && upstream_->stream.socket().is_open()) {
        // Keep-alive: the same endpoint serves the client's next request while it is up.
        for (auto& e : up.endpoints())
            if (e == upstream_->endpoint && e->available(now)) co_return &*upstream_;
    }
    upstream_.reset();
    const std::shared_ptr<routing::endpoint>* picked = up.pick(now, worker_.random());
    if (!picked) co_return nullptr;
    routing::endpoint* ep = picked->get();
    if (for_session) ep->session_opened();
    const auto& a = ep->address();
    error_code ec;
    const auto address = asio::ip::make_address(a.host, ec);
    const bool by_name = static_cast<bool>(ec);
    const bool sending = !by_name && !up.config().tls && !first_bytes.empty();
    error_code cec;
    const auto executor = worker_.context().get_executor();
    upstream_.emplace(sending ? net::open_socket(executor, address.is_v4() ? tcp::v4() : tcp::v6(), cec)
                              : tcp::socket(executor),
                      *picked);
    const tcp::endpoint literal(address, a.port);
    std::vector<tcp::endpoint> resolved;  // a name's addresses
    std::span<const tcp::endpoint> targets(&literal, 1);
    if (by_name) {
        tcp::resolver resolver(worker_.context());
        const std::string port = std::to_string(a.port);  // named: no temporary in a co_await (GCC 12)
        auto [rec, results] = co_await resolver.async_resolve(a.host, port, use_tuple);
        for (const auto& r : results) resolved.push_back(r.endpoint());
        targets = resolved;
    }
    if (sending) {
        if (!cec) cec = co_await connect_sending(targets.front(), first_bytes, up.config().connect_timeout);
    } else {
        upstream_->stream.expires_after(up.config().connect_timeout);
        std::tie(cec, std::ignore) = co_await upstream_->stream.tcp_layer().async_connect(targets, use_tuple);
    }
    if (!cec && targets.empty()) cec = asio::error::host_not_found;
    if (!cec && up.config().tls) {
        upstream_->stream.wrap_tls(ctx_.tls.client());
        if (by_name) SSL_set_tlsext_host_name(upstream_->stream.tls()->native_handle(), a.host.c_str());  // SNI
        std::tie(cec) = co_await upstream_->stream.tls()->async_handshake(asio::ssl::stream_base::client, use_tuple);
    }
    if (cec) {
        ep->connect_failed(clock::now());
        log::warn("backend connect failed", {{"endpoint", ep->name()}, {"error", cec.message()}});
        co_return &*upstream_;  // not connected: the caller answers 502
    }
    ep->connect_succeeded();
    upstream_->connected = true;
    upstream_->request_sent = sending;
    if (!sending) upstream_->stream.socket().set_option(tcp::no_delay(true), ec);  // open_socket sets it
    co_return &*upstream_;
}

// Connects and writes `bytes` without first waiting to learn that the connection is up. To a
// backend on the same host (a sidecar's) the handshake is complete by the time connect()
// returns, and the first send goes through at once: no epoll_ctl, wait, poll and getsockopt
// for the connect. Otherwise the write waits for the connection, with the same timeout. An
// error of either step is the connect's: refused, unreachable or timed out. The stream's
// socket is open (net::open_socket) and not connected.
asio::awaitable<error_code> connection::connect_sending(const tcp::endpoint& target, std::string_view bytes,
                                                        std::chrono::milliseconds timeout) {
    error_code ec;
    const int fd = upstream_->stream.socket().native_handle();
    if (::connect(fd, target.data(), static_cast<socklen_t>(target.size())) != 0 && errno != EINPROGRESS)
        co_return error_code(errno, boost::system::system_category());
    const std::size_t sent = send_now(fd, bytes, ec);
    if (ec) co_return ec;
    if (sent == bytes.size()) {
        net::readable_wait::expect_no_input_yet(upstream_->stream.socket());  // the answer comes later
        co_return ec;
    }
    const auto rest = asio::buffer(bytes.substr(sent));
    upstream_->stream.expires_after(timeout);
    std::tie(ec, std::ignore) = co_await asio::async_write(upstream_->stream, rest, use_tuple);
    co_return ec;
}

asio::awaitable<error_code> connection::read_answer(upstream_connection& conn,
                                                    bhttp::response_parser<bhttp::buffer_body>& rp,
                                                    std::chrono::milliseconds timeout) {
    error_code ec;
    if (conn.stream.tls()) {
        conn.stream.expires_after(timeout);
        std::tie(ec, std::ignore) = co_await bhttp::async_read_header(conn.stream, conn.buffer, rp, use_tuple);
        conn.stream.expires_never();
        co_return ec;
    }
    auto& socket = conn.stream.socket();
    const auto until = clock::now() + timeout;
    // The request has only just gone out: wait first. Each round reads until recv would block;
    // the parser's header limit bounds what a backend can make it take.
    for (;;) {
        const auto left = std::max(until - clock::now(), clock::duration::zero());
        std::tie(ec) = co_await net::async_wait_readable(socket, worker_.deadlines(), left, use_tuple);
        if (ec == asio::error::timed_out) co_return beast::error::timeout;
        if (ec) co_return ec;
        for (;;) {
            const ssize_t got = recv_into(socket.native_handle(), conn.buffer, answer_read_size);
            if (got == 0) co_return rp.got_some() ? bhttp::error::partial_message : bhttp::error::end_of_stream;
            if (got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
            if (got < 0) co_return error_code(errno, boost::system::system_category());
            conn.buffer.consume(rp.put(conn.buffer.data(), ec));
            if (ec != bhttp::error::need_more) co_return ec;  // the header is complete, or bad
        }
    }
}

asio::awaitable<bool> connection::hold(const routing::upstream& up, clock::time_point until, bool pause) {
    // Woken (its timer cancelled) when an endpoint may be back: an undrain, a health check
    // that passes, a reload. Each second it looks anyway, for an endpoint whose passive
    // back-off has passed. Also woken when the client's socket turns readable: a client that
    // left (EOF or reset) gives up its place, and the upgrade ends without an answer.
    asio::steady_timer timer{worker_.context()};
    const auto registered = ctx_.held[worker_.index()].add(timer);
    struct client_watch {  // outlives this frame if its handler runs after the wait ended
        asio::steady_timer* timer;
        bool stirred = false;
    };
    const auto watch = std::make_shared<client_watch>(client_watch{&timer});
    const auto watch_client = [this, &watch] {
        client_.socket().async_wait(tcp::socket::wait_read, [watch](const error_code& ec) {
            if (ec || !watch->timer) return;
            watch->stirred = true;
            watch->timer->cancel();
        });
    };
    struct unwatch {  // the client's wait ends with this frame
        client_watch& w;
        tcp::socket& socket;
        ~unwatch() {
            w.timer = nullptr;
            error_code ignored;
            socket.cancel(ignored);
        }
    } unwatch_client{*watch, client_.socket()};
    watch_client();
    for (;;) {
        const auto now = clock::now();
        if (watch->stirred) {
            watch->stirred = false;
            char byte;
            const auto n = ::recv(client_.socket().native_handle(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
            if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)) {
                client_gone_ = true;
                co_return false;
            }
            if (n < 0) watch_client();  // nothing after all: watch on
            // Bytes before the 101 (a client that does not wait): held as they are, not watched.
        }
        if (ctx_.refusing || closing_) co_return false;
        if (!pause && up.pick(now)) co_return true;
        if (ctx_.live[worker_.index()] != live_) co_return true;  // reloaded: the caller looks again
        if (now >= until) co_return false;
        timer.expires_at(std::min(until, now + (pause ? held_retry_pause : std::chrono::milliseconds(1000))));
        co_await timer.async_wait(use_tuple);
        pause = false;
    }
}

asio::awaitable<void> connection::serve_upgrade(bhttp::request_parser<bhttp::buffer_body>& parser,
                                                const routing::upstream& routed) {
    // A reload while the upgrade is held moves it to the upstream of the same name as it is
    // then; `pinned` keeps the one it was routed to alive meanwhile.
    const std::shared_ptr<const live_config> pinned = live_;
    const routing::upstream* up = &routed;
    auto& req = parser.get();
    if (auto why = check_websocket_request(req)) {
        bhttp::response<bhttp::string_body> res{why->status, 11};
        res.set(bhttp::field::server, "wsdrain");
        if (why->status == bhttp::status::upgrade_required) {
            res.set(bhttp::field::sec_websocket_version, "13");
            res.set(bhttp::field::upgrade, "websocket");
        }
        res.set(bhttp::field::content_type, "text/plain; charset=utf-8");
        res.body() = why->reason + "\n";
        res.keep_alive(false);
        res.prepare_payload();
        co_await bhttp::async_write(client_, res, use_tuple);
        co_return;
    }
    const auto& limits = live_->config.limits;
    if (ctx_.sessions.fetch_add(1) >= static_cast<std::int64_t>(limits.max_sessions)) {
        ctx_.sessions.fetch_sub(1);
        count_upgrade(*up, metrics::upgrade_result::rejected_limit);
        co_await send_error(client_, {bhttp::status::service_unavailable, "session limit reached", true}, 11, false);
        co_return;
    }
    struct session_slot {  // given back unless a tunnel takes the session
        std::atomic<std::int64_t>* count;
        ~session_slot() {
            if (count) count->fetch_sub(1);
        }
    } slot{&ctx_.sessions};
    if (!ctx_.per_client.acquire(client_info_.address, limits.max_sessions_per_client)) {
        count_upgrade(*up, metrics::upgrade_result::rejected_limit);
        co_await send_error(client_, {bhttp::status::service_unavailable, "session limit for this client reached", true},
                            11, false);
        co_return;
    }
    struct client_slot {  // the same for the per-client count
        net::client_sessions* sessions;
        const std::string& address;
        ~client_slot() {
            if (sessions) sessions->release(address);
        }
    } client_slot{&ctx_.per_client, client_info_.address};

    struct endpoint_slot {  // the count raised at the pick, given back unless a tunnel takes it
        routing::endpoint* endpoint = nullptr;
        ~endpoint_slot() {
            if (endpoint) endpoint->session_closed();
        }
    } endpoint_slot;
    struct held_slot {  // this upgrade among the upstream's held ones, while it waits
        routing::upstream_state* state = nullptr;
        metrics::gauge* gauge = nullptr;
        void release() {
            if (!state) return;
            state->held.fetch_sub(1, std::memory_order_relaxed);
            gauge->add(-1);
            state = nullptr;
        }
        ~held_slot() { release(); }
    } held_slot;
    const std::string forward = upstream_upgrade_request(req, client_info_);
    // With no endpoint available the upgrade is held until one is. An upgrade that was held
    // and then finds its endpoint still refusing (a backend that is starting) waits again;
    // one that was never held gets 502 for that, as any other request.
    const auto hold_until = clock::now() + up->config().hold_timeout;
    bool held = false;
    upstream_connection* conn = nullptr;
    std::optional<bhttp::response_parser<bhttp::buffer_body>> parser_of_answer;
    for (int round = 0;; ++round) {
        for (;;) {
            conn = co_await connect(*up, false, true, forward);
            if (conn) endpoint_slot.endpoint = conn->endpoint.get();
            if (conn && (conn->connected || !held)) break;
            const bool refused = conn != nullptr;
            if (refused) {  // refused after a hold: its count goes back, and the upgrade waits again
                endpoint_slot.endpoint->session_closed();
                endpoint_slot.endpoint = nullptr;
                upstream_.reset();
            }
            if (!held && clock::now() < hold_until) {
                if (up->state().held.fetch_add(1, std::memory_order_relaxed) >= up->config().hold_max) {
                    up->state().held.fetch_sub(1, std::memory_order_relaxed);
                } else {
                    held = true;
                    held_slot.state = &up->state();
                    held_slot.gauge = &worker_.stats().upstreams[up->metrics_slot()].upgrades_held;
                    held_slot.gauge->add(1);
                }
            }
            if (!held || !co_await hold(*up, hold_until, refused)) {
                conn = nullptr;
                break;
            }
            if (ctx_.live[worker_.index()] != live_) {  // reloaded while held
                live_ = ctx_.live[worker_.index()];
                if (const routing::upstream* now = live_->router.find(up->name())) up = now;
            }
        }
        held_slot.release();
        if (!conn && ctx_.refusing) {  // a drain began closing while the upgrade was held
            count_upgrade(*up, metrics::upgrade_result::rejected_draining);
            co_await send_error(client_, {bhttp::status::service_unavailable, "draining", true}, 11, false);
            co_return;
        }
        if (!conn && client_gone_) {  // nobody to answer
            count_upgrade(*up, metrics::upgrade_result::backend_error);
            co_return;
        }
        if (!conn) {
            count_upgrade(*up, metrics::upgrade_result::backend_error);
            co_await send_error(client_,
                                {bhttp::status::service_unavailable,
                                 held ? "no healthy backend within upstreams[].hold_timeout" : "no healthy backend", true},
                                11, false);
            co_return;
        }
        if (!conn->connected) {
            count_upgrade(*up, metrics::upgrade_result::backend_error);
            co_await send_error(client_, {bhttp::status::bad_gateway, "backend unreachable"}, 11, false);
            co_return;
        }
        // The backend has upstreams[].connect_timeout to take the request, and as long again
        // to answer it.
        error_code rec;
        if (!conn->request_sent) {
            conn->stream.expires_after(up->config().connect_timeout);
            std::tie(rec, std::ignore) = co_await asio::async_write(conn->stream, asio::buffer(forward), use_tuple);
            conn->stream.expires_never();
        }
        auto& rp = parser_of_answer.emplace();
        rp.body_limit(boost::none);
        if (!rec) rec = co_await read_answer(*conn, rp, up->config().connect_timeout);
        if (rec) {
            count_upgrade(*up, metrics::upgrade_result::backend_error);
            log::warn("backend failed the upgrade", {{"endpoint", conn->endpoint->name()}, {"error", rec.message()}});
            co_await send_error(client_,
                                rec == beast::error::timeout
                                    ? error_reply{bhttp::status::gateway_timeout, "backend did not answer the WebSocket handshake"}
                                    : error_reply{bhttp::status::bad_gateway, "backend failed the WebSocket handshake"},
                                11, false);
            co_return;
        }
        // Its endpoint was drained while the upgrade was under way: the client has seen
        // nothing yet, so the backend's new session is closed again (Close 1001) and the
        // upgrade routed anew, rather than answered 101 and closed with 1012 at once.
        if (rp.get().result() != bhttp::status::switching_protocols || !conn->endpoint->drained() ||
            round >= max_reroutes)
            break;
        std::array<std::uint8_t, codec::max_control_frame> close;
        const std::uint64_t key_bits = worker_.random();
        codec::mask_key key;
        std::memcpy(key.data(), &key_bits, key.size());
        const std::size_t n = codec::write_close(close.data(), codec::close_code::going_away, "endpoint drained", &key);
        conn->stream.expires_after(std::chrono::seconds(1));
        co_await asio::async_write(conn->stream, asio::buffer(close.data(), n), use_tuple);
        error_code ignored;
        conn->stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
        endpoint_slot.endpoint->session_closed();
        endpoint_slot.endpoint = nullptr;
        upstream_.reset();
    }
    auto& rp = *parser_of_answer;
    auto& res = rp.get();
    if (res.result() != bhttp::status::switching_protocols) {
        // The backend refused: its answer goes to the client as it is, body streamed.
        count_upgrade(*up, metrics::upgrade_result::backend_refused);
        prepare_downstream_response(res, false);
        bhttp::serializer<false, bhttp::buffer_body> sr{res};
        client_.expires_after(body_idle_timeout);
        auto [hec, hn] = co_await bhttp::async_write_header(client_, sr, use_tuple);
        if (!hec && !rp.is_done()) co_await relay_body(conn->stream, conn->buffer, rp, client_, sr);
        co_return;
    }

    const std::uint8_t rsv = negotiated_rsv_bits(res);
    const std::string switching = header_text(res);  // the backend's 101 as it came
    client_.expires_never();
    // One send takes it, unless the client left earlier answers unread and filled the send
    // buffer: the rest, or a TLS client's 101, is written as any answer.
    error_code sec;
    const std::size_t sent = client_.tls() ? 0 : send_now(client_.socket().native_handle(), switching, sec);
    if (!sec && sent < switching.size()) {
        const auto rest = asio::buffer(std::string_view(switching).substr(sent));
        std::tie(sec, std::ignore) = co_await asio::async_write(client_, rest, use_tuple);
    }
    if (sec) {
        count_upgrade(*up, metrics::upgrade_result::ok);  // the backend accepted; the client left
        co_return;
    }
    count_upgrade(*up, metrics::upgrade_result::ok);

    relay::tunnel_params params;
    const config::proxy_config& cfg = live_->config;
    params.max_frame_bytes = cfg.limits.max_frame_bytes;
    params.allowed_rsv = rsv;
    params.ping_interval = cfg.keepalive.ping_interval;
    params.keepalive_timeout = cfg.keepalive.timeout;
    params.close_timeout = cfg.drain.close_timeout;
    params.endpoint = conn->endpoint;
    params.client_address = client_address_;
    params.session_count = slot.count;
    params.per_client = client_slot.sessions;
    params.client_ip_size = static_cast<std::uint8_t>(client_info_.address.size());
    params.read_size = static_cast<std::uint32_t>(std::min<std::uint64_t>(limits.session_buffer_bytes, net::worker::scratch_size));
    slot.count = nullptr;
    client_slot.sessions = nullptr;
    endpoint_slot.endpoint = nullptr;

    const auto down_early = buffer_.data();
    const auto up_early = conn->buffer.data();
    relay::tunnel::start(worker_, client_.release(), conn->stream.release(), std::move(params),
                         {static_cast<const std::uint8_t*>(down_early.data()), down_early.size()},
                         {static_cast<const std::uint8_t*>(up_early.data()), up_early.size()}, cfg.drain);
    upstream_.reset();
}

asio::awaitable<bool> connection::serve_plain(bhttp::request_parser<bhttp::buffer_body>& parser,
                                              const routing::upstream& up) {
    auto& req = parser.get();
    const bool client_keep_alive = req.keep_alive();
    const bool head = req.method() == bhttp::verb::head;
    auto& in_flight = worker_.stats().http_requests_in_flight;
    in_flight.add(1);
    struct in_flight_guard {
        metrics::gauge& g;
        ~in_flight_guard() { g.add(-1); }
    } guard{in_flight};

    if (beast::iequals(req[bhttp::field::expect], "100-continue")) {
        // Answered here, as nginx does: the body then streams to the backend as it comes.
        req.erase(bhttp::field::expect);
        bhttp::response<bhttp::empty_body> cont{bhttp::status::continue_, 11};
        co_await bhttp::async_write(client_, cont, use_tuple);
    }
    prepare_upstream_request(req, client_info_);

    upstream_connection* conn = co_await connect(up, true);
    if (!conn || !conn->connected) {
        const bool none = !conn;
        co_await send_error(client_,
                            none ? error_reply{bhttp::status::service_unavailable, "no healthy backend", true}
                                 : error_reply{bhttp::status::bad_gateway, "backend unreachable"},
                            req.version(), false);
        co_return false;
    }
    bhttp::serializer<true, bhttp::buffer_body> request_writer{req};
    conn->stream.expires_after(body_idle_timeout);
    auto [hec, hn] = co_await bhttp::async_write_header(conn->stream, request_writer, use_tuple);
    error_code ec = hec;
    if (!ec && !parser.is_done()) ec = co_await relay_body(client_, buffer_, parser, conn->stream, request_writer);
    if (ec == bhttp::error::body_limit) {  // a body without a length ran over; the backend saw part of it
        upstream_.reset();
        co_await send_error(client_, {bhttp::status::payload_too_large, "request body over limits.max_body_bytes"},
                            11, false);
        co_return false;
    }
    if (ec) {
        upstream_.reset();
        const std::string why = "backend failed: " + ec.message();
        co_await send_error(client_, {bhttp::status::bad_gateway, why}, 11, false);
        co_return false;
    }

    for (;;) {  // informational responses (1xx) go to the client, then the real one
        bhttp::response_parser<bhttp::buffer_body> rp;
        rp.body_limit(boost::none);
        rp.skip(head);
        conn->stream.expires_after(body_idle_timeout);
        auto [rec, rn] = co_await bhttp::async_read_header(conn->stream, conn->buffer, rp, use_tuple);
        if (rec) {
            upstream_.reset();
            const std::string why = "backend failed: " + rec.message();
            co_await send_error(client_, {bhttp::status::bad_gateway, why}, 11, false);
            co_return false;
        }
        auto& res = rp.get();
        const bool informational = res.result_int() >= 100 && res.result_int() < 200;
        const bool backend_keep_alive = res.keep_alive();
        bool keep = keep_alive(client_keep_alive);
        prepare_downstream_response(res, keep);
        if (!informational && !res.has_content_length() && !res.chunked() && !head &&
            res.result_int() != 204 && res.result_int() != 304) {
            if (parser.get().version() >= 11) res.chunked(true);  // length unknown: chunk it
            else res.keep_alive(keep = false);  // HTTP/1.0: the end of the body is the close
        }
        bhttp::serializer<false, bhttp::buffer_body> response_writer{res};
        client_.expires_after(body_idle_timeout);
        auto [wec, wn] = co_await bhttp::async_write_header(client_, response_writer, use_tuple);
        error_code bec = wec;
        if (!bec && !rp.is_done()) bec = co_await relay_body(conn->stream, conn->buffer, rp, client_, response_writer);
        if (bec) {
            upstream_.reset();
            co_return false;
        }
        if (informational) continue;
        if (!backend_keep_alive) upstream_.reset();
        co_return keep;
    }
}

}  // namespace

void wake_held(net::worker& w, front_context& ctx) {
    ctx.held[w.index()].wake_all();
}

asio::awaitable<void> serve_connection(net::worker& w, front_context& ctx, tcp::socket socket, tcp::endpoint remote) {
    connection c{w, ctx, std::move(socket), remote};
    co_await c.run();
}

namespace {

// Accepts with accept4, so that each connection's socket is non-blocking from the start and
// inherits TCP_NODELAY from the listener (server::bind sets it there): no ioctl, setsockopt
// or epoll_ctl(EPOLL_CTL_DEL) per connection (see net/sockets.hpp). It accepts until the
// backlog is empty (the listener is registered edge-triggered), then waits without re-arming.
// It deletes itself when the listener is closed or its event loop shuts down.
class listener {
public:
    static void start(net::worker& w, front_context& ctx, tcp::acceptor& acceptor) {
        (new listener(w, ctx, acceptor))->accept();
    }

private:
    listener(net::worker& w, front_context& ctx, tcp::acceptor& acceptor)
        : worker_(w), ctx_(ctx), acceptor_(acceptor), readable_(&listener::on_readable, this), backoff_(w.context()) {}

    // At most a burst per turn: a flood of connections does not starve the open sessions.
    static constexpr int burst = 64;

    void accept() {
        for (int i = 0; i < burst; ++i) {
            sockaddr_storage peer{};
            socklen_t size = sizeof peer;
            const int fd = ::accept4(acceptor_.native_handle(), reinterpret_cast<sockaddr*>(&peer), &size,
                                     SOCK_NONBLOCK | SOCK_CLOEXEC);
            if (fd < 0) {
                if (errno == EAGAIN || errno == EWOULDBLOCK) return readable_.start(acceptor_);
                if (errno == EINTR || errno == ECONNABORTED) continue;
                if (errno == EBADF || errno == EINVAL) return delete this;  // the listener is closed
                return pause(error_code(errno, boost::system::system_category()));
            }
            tcp::endpoint remote;
            if (size > remote.capacity()) {  // not an IPv4 or IPv6 peer: cannot be on a TCP listener
                ::close(fd);
                continue;
            }
            std::memcpy(remote.data(), &peer, size);
            remote.resize(size);
            error_code ec;
            tcp::socket socket = net::adopt_socket(worker_.context().get_executor(), remote.protocol(), fd, ec);
            if (ec) return pause(ec);
            if (paused_) {
                log::info("accept resumed");
                paused_ = false;
            }
            asio::co_spawn(worker_.context(), serve_connection(worker_, ctx_, std::move(socket), remote), asio::detached);
        }
        asio::post(worker_.context(), [self = owned()]() mutable { self.release()->go_on(); });
    }

    // Handlers that wait for the listener own it: destroyed unrun at shutdown, they delete it.
    std::unique_ptr<listener> owned() { return std::unique_ptr<listener>(this); }
    void go_on() {
        if (acceptor_.is_open()) return accept();
        delete this;
    }

    // Out of descriptors (or a similar passing failure): the connection waits in the kernel's
    // backlog while accepting pauses, instead of spinning on the error.
    void pause(const error_code& ec) {
        if (!paused_) {
            log::warn("accept paused", {{"error", ec.message()}, {"retry_ms", accept_retry.count()}});
            worker_.stats().accept_paused.add();
            paused_ = true;
        }
        backoff_.expires_after(accept_retry);
        backoff_.async_wait([self = owned()](const error_code&) mutable { self.release()->go_on(); });
    }

    static void on_readable(void* owner, const error_code* ec) {
        auto* self = static_cast<listener*>(owner);
        if (ec == nullptr || *ec == asio::error::operation_aborted) return delete self;  // shut down, or closed
        self->go_on();
    }

    net::worker& worker_;
    front_context& ctx_;
    tcp::acceptor& acceptor_;
    net::readable_wait readable_;
    asio::steady_timer backoff_;
    bool paused_ = false;
};

}  // namespace

void start_accepting(net::worker& w, front_context& ctx, tcp::acceptor& acceptor) {
    listener::start(w, ctx, acceptor);
}

}  // namespace wsdrain::http
