#include "http/forwarding.hpp"

#include <boost/beast/core/detail/base64.hpp>
#include <boost/beast/http/rfc7230.hpp>

#include <algorithm>
#include <vector>

namespace wsdrain::http {

namespace bhttp = beast::http;

namespace {

bool iequals(std::string_view a, std::string_view b) { return beast::iequals(a, b); }

bool has_token(std::string_view list, std::string_view token) {
    for (const auto& t : bhttp::token_list{list})
        if (iequals(t, token)) return true;
    return false;
}

// Transfer-Encoding ends in "chunked" (RFC 9112 section 6.1). Every Transfer-Encoding line
// counts, as one list (RFC 9110 section 5.3), the way Beast's parser frames the body: fields[]
// sees only the first line.
bool is_chunked(const bhttp::fields& f) {
    std::string_view last;
    for (auto [line, end] = f.equal_range(bhttp::field::transfer_encoding); line != end; ++line)
        for (const auto& t : bhttp::token_list{line->value()}) last = {t.data(), t.size()};
    return iequals(last, "chunked");
}

}  // namespace

bool wants_websocket(const request_header& req) { return has_token(req[bhttp::field::upgrade], "websocket"); }

std::optional<rejection> check_websocket_request(const request_header& req) {
    using bhttp::status;
    if (req.method() != bhttp::verb::get) return rejection{status::bad_request, "a WebSocket upgrade must use GET"};
    if (req.version() < 11) return rejection{status::bad_request, "a WebSocket upgrade needs HTTP/1.1"};
    if (!has_token(req[bhttp::field::connection], "upgrade"))
        return rejection{status::bad_request, "the Connection header must contain 'upgrade'"};
    if (req[bhttp::field::host].empty()) return rejection{status::bad_request, "the Host header is missing"};
    if (req[bhttp::field::sec_websocket_version] != "13")
        return rejection{status::upgrade_required, "Sec-WebSocket-Version must be 13"};
    const auto key = req[bhttp::field::sec_websocket_key];
    if (key.size() != 24 || beast::detail::base64::decoded_size(key.size()) < 16)
        return rejection{status::bad_request, "Sec-WebSocket-Key must be 16 bytes in base64"};
    std::uint8_t decoded[18];
    const auto decoded_size = beast::detail::base64::decode(decoded, key.data(), key.size()).first;
    if (decoded_size != 16 || !key.ends_with("=="))
        return rejection{status::bad_request, "Sec-WebSocket-Key must be 16 bytes in base64"};
    if (req.count(bhttp::field::content_length) && req[bhttp::field::content_length] != "0")
        return rejection{status::bad_request, "a WebSocket upgrade has no body"};
    if (req.count(bhttp::field::transfer_encoding))
        return rejection{status::bad_request, "a WebSocket upgrade has no body"};
    return std::nullopt;
}

void strip_hop_by_hop(bhttp::fields& fields) {
    std::vector<std::string> named;
    for (auto [line, end] = fields.equal_range(bhttp::field::connection); line != end; ++line)
        for (const auto& t : bhttp::token_list{line->value()}) named.emplace_back(t);
    for (const auto& n : named)
        if (!iequals(n, "host") && !iequals(n, "content-length")) fields.erase(n);
    for (auto f : {bhttp::field::connection, bhttp::field::keep_alive, bhttp::field::proxy_connection,
                   bhttp::field::te, bhttp::field::transfer_encoding, bhttp::field::upgrade})
        fields.erase(f);
}

void prepare_upstream_request(request_header& req, const client_info& client, bool upgrade) {
    const std::string host(req[bhttp::field::host]);
    const bool chunked = is_chunked(req);
    strip_hop_by_hop(req);
    req.version(11);
    if (chunked) req.set(bhttp::field::transfer_encoding, "chunked");
    const auto xff = req["X-Forwarded-For"];
    req.set("X-Forwarded-For", xff.empty() ? client.address : std::string(xff) + ", " + client.address);
    req.set("X-Forwarded-Proto", client.tls ? "https" : "http");
    req.set("X-Forwarded-Host", host);
    if (upgrade) {
        req.set(bhttp::field::connection, "Upgrade");
        req.set(bhttp::field::upgrade, "websocket");
    }
}

void prepare_downstream_response(response_header& res, bool keep_alive) {
    const bool chunked = is_chunked(res);
    strip_hop_by_hop(res);
    if (chunked) res.set(bhttp::field::transfer_encoding, "chunked");
    if (!keep_alive) res.set(bhttp::field::connection, "close");
    else if (res.version() < 11) res.set(bhttp::field::connection, "keep-alive");
}

std::uint8_t negotiated_rsv_bits(const response_header& res) {
    std::uint8_t bits = 0;
    for (const auto& ext : bhttp::ext_list{res[bhttp::field::sec_websocket_extensions]})
        bits |= iequals(ext.first, "permessage-deflate") ? 0x40 : 0x70;
    return bits;
}

}  // namespace wsdrain::http
