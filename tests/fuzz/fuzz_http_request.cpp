// Fuzzes the HTTP request front: what http::connection (front.cpp) does with a client's bytes,
// step for step but without sockets. The bytes arrive in reads of fuzzer-chosen sizes; each
// request header is parsed with the same parser and limits (limits.max_header_bytes of a small
// fixed config), routed, and then
// - an upgrade is validated (check_websocket_request), written out for the backend
//   (upstream_upgrade_request), and answered by a backend that accepts the offered extensions
//   (negotiated_rsv_bits), whose 101 header_text writes out for the client as it came;
// - a plain request is rewritten and its body streamed through the same buffer_body parser and
//   serializer as relay_body does, in pieces of a fuzzer-chosen size;
// - a kept-alive connection goes on with the next request in the bytes.
//
// Input: [read a] [read b] [piece] [flags] [client bytes...]
//   read a, read b: read sizes, alternating (0: the rest of the input)
//   piece: the body buffer's size (0: 16384, as relay_body)
//   flags bit 0: the client came over TLS; bit 1: its address is IPv6
//
// What the backend receives is parsed again with Beast, as the backend would, and must be one
// valid request (nothing after it that a backend would read as another request) with the same
// method, target, Host and body, no hop-by-hop headers, the X-Forwarded-* headers set; an
// accepted upgrade must still pass the proxy's own upgrade checks.

#include <boost/beast/core/buffers_to_string.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/http/rfc7230.hpp>

#include <algorithm>
#include <cctype>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "config/config.hpp"
#include "http/forwarding.hpp"
#include "routing/router.hpp"

using namespace wsdrain;
namespace beast = boost::beast;
namespace bhttp = beast::http;
using boost::system::error_code;

namespace {

[[noreturn]] void fail(const char* what, std::string_view detail) {
    std::fprintf(stderr, "fuzz_http_request: %s\n%.*s\n", what, static_cast<int>(detail.size()), detail.data());
    std::abort();
}

#define CHECK(cond, detail)                 \
    do {                                    \
        if (!(cond)) fail(#cond, (detail)); \
    } while (0)

constexpr std::string_view fixed_config = R"(
upstreams:
  - name: app
    endpoints: [127.0.0.1:9000]
  - name: chat
    endpoints: [127.0.0.1:9001]
  - name: api
    endpoints: [127.0.0.1:9002]
routes:
  - path_prefix: /
    upstream: app
  - path_prefix: /api/
    upstream: api
  - host: chat.example.com
    path_prefix: /ws
    upstream: chat
limits:
  max_header_bytes: 1024
)";

struct fixture {
    config::proxy_config config;
    std::optional<routing::router> router;

    fixture() {
        config::load_result loaded = config::load_string(fixed_config);
        if (!loaded.ok()) fail("the fixed config does not load", loaded.problems.front().message);
        config = loaded.config;
        router.emplace(config);
    }
};

// The client's side of the connection: its bytes, handed out in reads of the chosen sizes.
struct client_stream {
    const std::uint8_t* data;
    std::size_t size;
    std::size_t read_sizes[2];
    std::size_t pos = 0;     // bytes read
    std::size_t parsed = 0;  // bytes a parser took
    std::size_t reads = 0;

    // Appends the next read to `buffer`; false at the end of the bytes (EOF).
    bool read(beast::flat_buffer& buffer) {
        if (pos == size) return false;
        const std::size_t want = read_sizes[reads++ % 2];
        const std::size_t n = want == 0 ? size - pos : std::min(want, size - pos);
        auto space = buffer.prepare(n);
        std::memcpy(space.data(), data + pos, n);
        buffer.commit(n);
        pos += n;
        return true;
    }
};

// bhttp::read_some (beast/http/impl/read.hpp) over the client stream; `consumed` counts the bytes
// the parser took.
template <class Parser>
error_code read_some(client_stream& in, beast::flat_buffer& buffer, Parser& parser, std::size_t& consumed) {
    error_code ec;
    for (bool parse = buffer.size() > 0;; parse = true) {
        if (parse) {
            const std::size_t used = parser.put(buffer.data(), ec);
            buffer.consume(used);
            consumed += used;
            in.parsed += used;
            if (ec != bhttp::error::need_more) return ec;
        }
        if (!in.read(buffer)) {
            if (parser.got_some())
                parser.put_eof(ec);
            else
                ec = bhttp::error::end_of_stream;
            return ec;
        }
    }
}

// bhttp::read_header; the header's size is what it returns as bytes transferred.
template <class Parser>
error_code read_header(client_stream& in, beast::flat_buffer& buffer, Parser& parser, std::size_t& header_bytes) {
    parser.eager(false);
    while (!parser.is_header_done()) {
        const std::size_t before = header_bytes;
        const std::size_t received = in.pos;
        if (const error_code ec = read_some(in, buffer, parser, header_bytes)) return ec;
        CHECK(header_bytes > before || in.pos > received, "the parser makes no progress");
    }
    return {};
}

// bhttp::read with a parser (eager): until the message is done or the body buffer is full.
template <class Parser>
error_code read_message(client_stream& in, beast::flat_buffer& buffer, Parser& parser) {
    parser.eager(true);
    std::size_t consumed = 0;
    while (!parser.is_done()) {
        const std::size_t before = consumed;
        const std::size_t received = in.pos;
        if (const error_code ec = read_some(in, buffer, parser, consumed)) return ec;
        CHECK(consumed > before || in.pos > received, "the parser makes no progress");
    }
    return {};
}

// bhttp::write_some and write: the serializer's buffers appended to `out`.
template <class Serializer>
error_code write_some(Serializer& sr, std::string& out) {
    error_code ec;
    std::size_t n = 0;
    sr.next(ec, [&](error_code&, const auto& buffers) {
        for (const auto b : beast::buffers_range_ref(buffers)) {
            out.append(static_cast<const char*>(b.data()), b.size());
            n += b.size();
        }
    });
    if (!ec) sr.consume(n);
    return ec;
}

template <class Serializer>
error_code write_header(Serializer& sr, std::string& out) {
    sr.split(true);
    while (!sr.is_header_done())
        if (const error_code ec = write_some(sr, out)) return ec;
    return {};
}

template <class Serializer>
error_code write_all(Serializer& sr, std::string& out) {
    while (!sr.is_done())
        if (const error_code ec = write_some(sr, out)) return ec;
    return {};
}

std::string text(const bhttp::fields& f) {
    std::string out;
    for (const auto& field : f)
        out.append(field.name_string()).append(": ").append(field.value()).append("\r\n");
    return out;
}

// Base64 of 16 bytes (RFC 6455 section 4.1), checked here without Beast: 22 characters of the
// alphabet and "==". (The 4 bits the last character carries past the 16 bytes may be anything.)
bool is_base64_16_bytes(std::string_view key) {
    if (key.size() != 24 || !key.ends_with("==")) return false;
    const std::string_view alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for (std::size_t i = 0; i < 22; ++i)
        if (alphabet.find(key[i]) == std::string_view::npos) return false;
    return true;
}

// The request the backend received, parsed as a backend would (into a body that reserves
// nothing for a Content-Length that never comes).
struct received {
    bhttp::request_parser<bhttp::dynamic_body> parser;
    error_code ec;
    std::size_t used = 0;  // bytes of the backend's input that belong to this request
};

void parse_as_backend(std::string_view wire, received& r) {
    r.parser.header_limit(UINT32_MAX);
    r.parser.body_limit(boost::none);
    r.parser.eager(true);
    while (!r.parser.is_done()) {
        const std::size_t n = r.parser.put(boost::asio::buffer(wire.data() + r.used, wire.size() - r.used), r.ec);
        r.used += n;
        if (n == 0 || (r.ec && r.ec != bhttp::error::need_more)) break;
        r.ec = {};
    }
}

// What every request forwarded to a backend must be, whether upgrade or plain.
void check_forwarded(const bhttp::request_header<>& original, const bhttp::request_header<>& got,
                     const http::client_info& client, const std::string& wire) {
    const std::string detail = text(original) + "---- forwarded ----\n" + wire;
    CHECK(got.method_string() == original.method_string() && got.target() == original.target(), detail);
    CHECK(got.version() == 11, detail);
    CHECK(got[bhttp::field::host] == original[bhttp::field::host], detail);
    for (const auto f : {bhttp::field::keep_alive, bhttp::field::proxy_connection, bhttp::field::te})
        CHECK(got.count(f) == 0, detail);
    const std::string_view xff = got["X-Forwarded-For"];
    CHECK(xff == client.address || xff.ends_with(", " + client.address), detail);
    CHECK(
        got.count("X-Forwarded-For") == 1 && got.count("X-Forwarded-Proto") == 1 && got.count("X-Forwarded-Host") == 1,
        detail);
    CHECK(got["X-Forwarded-Proto"] == (client.tls ? "https" : "http"), detail);
    CHECK(got["X-Forwarded-Host"] == original[bhttp::field::host], detail);
    // What the client's Connection lines name is gone, but for what describes the message (Host,
    // Content-Length) and what the proxy sets itself.
    for (auto [line, end] = original.equal_range(bhttp::field::connection); line != end; ++line) {
        for (const auto& token : bhttp::token_list{line->value()}) {
            const std::string_view name{token.data(), token.size()};
            const bool kept = beast::iequals(name, "Host") || beast::iequals(name, "Content-Length");
            const bool set = beast::iequals(name, "Connection") || beast::iequals(name, "Upgrade") ||
                             beast::iequals(name, "Transfer-Encoding") || beast::iequals(name, "X-Forwarded-For") ||
                             beast::iequals(name, "X-Forwarded-Proto") || beast::iequals(name, "X-Forwarded-Host");
            if (!kept && !set) CHECK(got.count(name) == 0, detail);
        }
    }
}

// serve_upgrade: the checks, the request to the backend, and the backend's 101.
void serve_upgrade(bhttp::request_parser<bhttp::buffer_body>& parser, const http::client_info& client) {
    auto& req = parser.get();
    const bhttp::request_header<> original = req.base();
    const std::string detail = text(original);
    const auto why = http::check_websocket_request(req);
    if (why) {
        CHECK(why->status == bhttp::status::bad_request || why->status == bhttp::status::upgrade_required, detail);
        CHECK(!why->reason.empty(), detail);
        return;
    }
    // Accepted: what RFC 6455 section 4.2.1 asks of the request, checked without forwarding.cpp.
    CHECK(req.method() == bhttp::verb::get && req.version() >= 11, detail);
    CHECK(!req[bhttp::field::host].empty() && req[bhttp::field::sec_websocket_version] == "13", detail);
    CHECK(is_base64_16_bytes(req[bhttp::field::sec_websocket_key]), detail);
    // No body: the bytes after the header are the client's first frames, for the tunnel.
    CHECK(parser.is_done() && !parser.chunked() && parser.content_length().value_or(0) == 0, detail);

    const std::string wire = http::upstream_upgrade_request(req, client);

    received backend;
    parse_as_backend(wire, backend);
    CHECK(!backend.ec && backend.parser.is_done() && backend.used == wire.size(), detail + "----\n" + wire);
    const auto& got = backend.parser.get();
    check_forwarded(original, got, client, wire);
    CHECK(got[bhttp::field::connection] == "Upgrade" && got[bhttp::field::upgrade] == "websocket", wire);
    CHECK(got.count(bhttp::field::transfer_encoding) == 0 && got.body().size() == 0, wire);
    CHECK(http::wants_websocket(got) && !http::check_websocket_request(got), detail + "---- forwarded ----\n" + wire);

    // A backend that accepts the extensions offered, as they were offered.
    bhttp::response<bhttp::empty_body> accept{bhttp::status::switching_protocols, 11};
    accept.set(bhttp::field::upgrade, "websocket");
    accept.set(bhttp::field::connection, "Upgrade");
    accept.set(bhttp::field::sec_websocket_accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    const std::string_view offered = got[bhttp::field::sec_websocket_extensions];
    if (!offered.empty()) accept.set(bhttp::field::sec_websocket_extensions, offered);
    std::string answer;
    bhttp::serializer<false, bhttp::empty_body> asr{accept};
    CHECK(!write_all(asr, answer), detail);
    bhttp::response_parser<bhttp::empty_body> rp;
    error_code ec;
    CHECK(rp.put(boost::asio::buffer(answer), ec) == answer.size() && !ec && rp.is_header_done(), answer);
    CHECK(http::header_text(rp.get()) == answer, answer);  // the 101 goes to the client as it came
    const std::uint8_t rsv = http::negotiated_rsv_bits(rp.get());
    CHECK((rsv & ~0x70) == 0, answer);
    bool any = false, deflate = false, other = false;
    for (const auto& ext : bhttp::ext_list{rp.get()[bhttp::field::sec_websocket_extensions]}) {
        any = true;
        (beast::iequals(ext.first, "permessage-deflate") ? deflate : other) = true;
    }
    CHECK(any || rsv == 0, answer);
    CHECK(!deflate || (rsv & 0x40), answer);
    CHECK(!other || rsv == 0x70, answer);
}

// serve_plain up to the backend's response: the request rewritten and its body relayed.
// Returns whether the connection goes on with the client's next request.
bool serve_plain(bhttp::request_parser<bhttp::buffer_body>& parser, client_stream& in, beast::flat_buffer& buffer,
                 const http::client_info& client, std::size_t piece) {
    auto& req = parser.get();
    const bool client_keep_alive = req.keep_alive();
    if (beast::iequals(req[bhttp::field::expect], "100-continue")) req.erase(bhttp::field::expect);
    const bhttp::request_header<> original = req.base();
    http::prepare_upstream_request(req, client);

    std::string wire;
    bhttp::serializer<true, bhttp::buffer_body> sr{req};
    CHECK(!write_header(sr, wire), text(original));
    std::string body;  // the body as the proxy parsed it from the client
    bool complete = true;
    if (!parser.is_done()) {  // relay_body
        std::vector<char> chunk(piece);
        auto& b = parser.get().body();
        do {
            if (!parser.is_done()) {
                b.data = chunk.data();
                b.size = chunk.size();
                error_code ec = read_message(in, buffer, parser);
                if (ec == bhttp::error::need_buffer) ec = {};
                if (ec) {
                    complete = false;  // the client stopped or broke the body: the proxy gives up
                    break;
                }
                b.size = chunk.size() - b.size;
                b.data = b.size > 0 ? chunk.data() : nullptr;
                b.more = !parser.is_done();
                body.append(chunk.data(), b.size);
            } else {
                b.data = nullptr;
                b.size = 0;
                b.more = false;
            }
            error_code ec = write_all(sr, wire);
            if (ec == bhttp::error::need_buffer) ec = {};
            CHECK(!ec, text(original));
        } while (!parser.is_done() || !sr.is_done());
    }

    received backend;
    parse_as_backend(wire, backend);
    const std::string detail = text(original) + "---- forwarded ----\n" + wire;
    if (!complete) {
        // The backend got the start of a request, and nothing it could take as more.
        CHECK(!backend.parser.is_done() && (!backend.ec || backend.ec == bhttp::error::need_more), detail);
        CHECK(body.starts_with(beast::buffers_to_string(backend.parser.get().body().data())), detail);
        return false;
    }
    CHECK(!backend.ec && backend.parser.is_done(), detail);
    CHECK(backend.used == wire.size(), detail);  // anything after it would be a smuggled request
    CHECK(beast::buffers_to_string(backend.parser.get().body().data()) == body, detail);
    const auto& got = backend.parser.get();
    check_forwarded(original, got, client, wire);
    CHECK(got.count(bhttp::field::connection) == 0 && got.count(bhttp::field::upgrade) == 0, detail);
    CHECK(got.count(bhttp::field::transfer_encoding) == 0 || got[bhttp::field::transfer_encoding] == "chunked", detail);
    return client_keep_alive;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    static fixture f;
    if (size < 4) return 0;
    client_stream in{data + 4, size - 4, {data[0], data[1]}};
    const std::size_t piece = data[2] == 0 ? 16384 : data[2];
    const http::client_info client{(data[3] & 2) ? "2001:db8::7" : "192.0.2.7", (data[3] & 1) != 0};
    const auto header_limit =
        static_cast<std::uint32_t>(std::min<std::uint64_t>(f.config.limits.max_header_bytes, UINT32_MAX));

    beast::flat_buffer buffer;  // connection::buffer_
    for (int request = 0; request < 8; ++request) {
        bhttp::request_parser<bhttp::buffer_body> parser;
        parser.header_limit(header_limit);
        parser.body_limit(boost::none);
        std::size_t header_bytes = 0;
        const std::string_view rest(reinterpret_cast<const char*>(in.data) + in.parsed, in.size - in.parsed);
        error_code ec = read_header(in, buffer, parser, header_bytes);
        if (ec == bhttp::error::end_of_stream) break;
        if (!ec && header_bytes > f.config.limits.max_header_bytes) ec = bhttp::error::header_limit;  // as front.cpp
        if (ec == bhttp::error::header_limit) {                                                       // 431
            // Refused only when the header does not end within the limit.
            CHECK(rest.substr(0, header_limit).find("\r\n\r\n") == std::string_view::npos, rest);
            break;
        }
        if (ec) break;  // 400

        auto& req = parser.get();
        if (req.count(bhttp::field::transfer_encoding) && !parser.chunked()) break;  // 400, as front.cpp
        const std::string_view target{req.target().data(), req.target().size()};
        const std::string_view host{req[bhttp::field::host].data(), req[bhttp::field::host].size()};
        const std::string_view path = target.substr(0, target.find('?'));
        const routing::upstream* up = f.router->match(host, path);
        // The longest matching prefix among the host-less routes, unless the host route won.
        if (up && up->name() != "chat") {
            CHECK(up->name() == (path.starts_with("/api/") ? "api" : "app"), std::string(target));
        }
        if (up && up->name() == "chat") CHECK(path.starts_with("/ws"), std::string(target));
        CHECK(up || !path.starts_with("/"), std::string(target));
        // Hosts match without case and port.
        std::string other_host(host);
        std::transform(other_host.begin(), other_host.end(), other_host.begin(),
                       [](unsigned char c) { return std::toupper(c); });
        CHECK(f.router->match(other_host, path) == up, other_host);
        if (host.find(':') == std::string_view::npos && host.find('[') == std::string_view::npos)
            CHECK(f.router->match(std::string(host) + ":8443", path) == up, std::string(host));

        const bool upgrade = http::wants_websocket(req);
        if (!up) {  // 404
            if (upgrade || !parser.is_done() || !req.keep_alive()) break;
            continue;
        }
        if (upgrade) {
            serve_upgrade(parser, client);
            break;  // the connection is a tunnel now, or closed
        }
        if (!serve_plain(parser, in, buffer, client, piece)) break;
    }
    return 0;
}
