#include "http/forwarding.hpp"

#include <boost/beast/core/detail/base64.hpp>
#include <boost/beast/http/rfc7230.hpp>

#include <algorithm>
#include <initializer_list>
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

// The headers no message keeps on its way through.
bool always_hop_by_hop(bhttp::field f) {
    switch (f) {
        case bhttp::field::connection:
        case bhttp::field::keep_alive:
        case bhttp::field::proxy_connection:
        case bhttp::field::te:
        case bhttp::field::transfer_encoding:
        case bhttp::field::upgrade: return true;
        default: return false;
    }
}

// The header lines a message loses on its way through: those above, and those its Connection
// lines name (on any of them), but Host and Content-Length (see strip_hop_by_hop). Views the
// Connection lines: they must outlive it.
class connection_names {
public:
    explicit connection_names(const bhttp::fields& f) {
        for (auto [line, end] = f.equal_range(bhttp::field::connection); line != end; ++line)
            for (const auto& t : bhttp::token_list{line->value()}) {
                const std::string_view name{t.data(), t.size()};
                const auto known = bhttp::string_to_field(name);
                if (always_hop_by_hop(known) || known == bhttp::field::host || known == bhttp::field::content_length ||
                    iequals(name, "close"))
                    continue;  // no allocation for the usual "keep-alive", "Upgrade" or "close"
                names_.push_back(name);
            }
    }

    bool hop_by_hop(const bhttp::fields::value_type& line) const {
        if (always_hop_by_hop(line.name())) return true;
        const std::string_view name = line.name_string();
        return std::any_of(names_.begin(), names_.end(), [name](std::string_view n) { return iequals(n, name); });
    }

private:
    std::vector<std::string_view> names_;
};

void append(std::string& out, std::initializer_list<std::string_view> parts) {
    for (const auto part : parts) out += part;
}

// What the backend is told of the client, in both ways a request is forwarded: the client's
// address appended to the first X-Forwarded-For line it sent (the others are dropped), and
// X-Forwarded-Proto and X-Forwarded-Host replaced.
struct forwarded {
    static constexpr std::string_view for_name = "X-Forwarded-For", proto_name = "X-Forwarded-Proto",
                                      host_name = "X-Forwarded-Host";
    static bool replaced(std::string_view name) { return iequals(name, proto_name) || iequals(name, host_name); }

    forwarded(std::string_view first_for, const client_info& client, std::string_view host_line)
        : prior(first_for), address(client.address), proto(client.tls ? "https" : "http"), host(host_line) {}
    std::string_view separator() const { return prior.empty() ? "" : ", "; }
    std::string for_value() const {
        std::string v;
        append(v, {prior, separator(), address});
        return v;
    }

    std::string_view prior, address, proto, host;
};

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
    const connection_names named{fields};
    for (auto f = fields.begin(); f != fields.end();) {
        if (f->name() != bhttp::field::connection && named.hop_by_hop(*f)) f = fields.erase(f);
        else ++f;
    }
    fields.erase(bhttp::field::connection);  // last: `named` views its lines
}

void prepare_upstream_request(request_header& req, const client_info& client) {
    const std::string host(req[bhttp::field::host]);
    const bool chunked = is_chunked(req);
    strip_hop_by_hop(req);
    req.version(11);
    if (chunked) req.set(bhttp::field::transfer_encoding, "chunked");
    const forwarded f{req[forwarded::for_name], client, host};
    req.set(forwarded::for_name, f.for_value());
    req.set(forwarded::proto_name, f.proto);
    req.set(forwarded::host_name, f.host);
}

std::string upstream_upgrade_request(const request_header& req, const client_info& client) {
    const connection_names named{req};
    std::string_view forwarded_for;  // the first X-Forwarded-For line's, as req["X-Forwarded-For"]
    bool forwarded_for_seen = false;
    std::string out;
    out.reserve(512);
    append(out, {req.method_string(), " ", req.target(), " HTTP/1.1\r\n"});
    for (const auto& f : req) {
        if (named.hop_by_hop(f)) continue;
        const std::string_view name = f.name_string();
        if (f.name() == bhttp::field::unknown) {
            if (iequals(name, forwarded::for_name)) {
                if (!forwarded_for_seen) forwarded_for = f.value();
                forwarded_for_seen = true;
                continue;
            }
            if (forwarded::replaced(name)) continue;
        }
        append(out, {name, ": ", f.value(), "\r\n"});
    }
    const forwarded fw{forwarded_for, client, req[bhttp::field::host]};
    append(out, {forwarded::for_name, ": ", fw.prior, fw.separator(), fw.address, "\r\n",  //
                 forwarded::proto_name, ": ", fw.proto, "\r\n",                            //
                 forwarded::host_name, ": ", fw.host, "\r\n",                              //
                 "Connection: Upgrade\r\nUpgrade: websocket\r\n\r\n"});
    return out;
}

std::string header_text(const response_header& res) {
    const unsigned version = res.version(), code = res.result_int();
    const char start[] = {'H', 'T', 'T', 'P', '/', static_cast<char>('0' + version / 10 % 10), '.',
                          static_cast<char>('0' + version % 10), ' ', static_cast<char>('0' + code / 100 % 10),
                          static_cast<char>('0' + code / 10 % 10), static_cast<char>('0' + code % 10), ' '};
    const std::string_view reason = res.reason().empty() ? bhttp::obsolete_reason(res.result()) : res.reason();
    std::string out;
    out.reserve(256);
    append(out, {{start, sizeof start}, reason, "\r\n"});
    for (const auto& f : res) append(out, {f.name_string(), ": ", f.value(), "\r\n"});
    out += "\r\n";
    return out;
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
