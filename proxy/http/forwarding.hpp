#pragma once
// What the proxy changes in HTTP headers on their way through (RFC 9110 section 7.6), and
// the checks an upgrade request must pass. No I/O.

#include <boost/beast/http/fields.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/status.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace wsdrain::http {

namespace beast = boost::beast;
using request_header = beast::http::request_header<>;
using response_header = beast::http::response_header<>;

// True when the request asks for a WebSocket (its Upgrade header names "websocket").
bool wants_websocket(const request_header& req);

struct rejection {
    beast::http::status status;
    std::string reason;  // the response body: says what is wrong
};

// Why an upgrade request cannot be forwarded (RFC 6455 section 4.2.1), or nullopt.
std::optional<rejection> check_websocket_request(const request_header& req);

struct client_info {
    std::string address;  // the peer's IP address
    bool tls = false;
};

// Removes hop-by-hop headers: Connection, the headers it names (on any of its lines), Keep-Alive,
// Proxy-Connection, TE, Transfer-Encoding and Upgrade. Host and Content-Length stay even when
// named: they describe the message, and without Content-Length its body would be read as the
// next message.
void strip_hop_by_hop(beast::http::fields& fields);

// Prepares a client's request for the backend: hop-by-hop headers removed, X-Forwarded-For
// appended to, X-Forwarded-Proto and X-Forwarded-Host set, HTTP/1.1.
void prepare_upstream_request(request_header& req, const client_info& client);

// A WebSocket upgrade request as the backend gets it, as text: the changes above in one pass
// over the client's headers, in their order, then "Connection: Upgrade" and "Upgrade:
// websocket". `req` has passed check_websocket_request (so it has no body).
std::string upstream_upgrade_request(const request_header& req, const client_info& client);

// A response's header as text, as Beast's serializer writes it.
std::string header_text(const response_header& res);

// Prepares a backend's response for the client. `keep_alive` is what the client gets.
void prepare_downstream_response(response_header& res, bool keep_alive);

// The RSV bits the extensions in a 101 response's Sec-WebSocket-Extensions may set:
// RSV1 for permessage-deflate, all three for any extension the proxy does not know.
std::uint8_t negotiated_rsv_bits(const response_header& res);

}  // namespace wsdrain::http
