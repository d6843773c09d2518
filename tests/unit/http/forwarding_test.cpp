#include "http/forwarding.hpp"

#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/write.hpp>

#include <gtest/gtest.h>

#include <sstream>
#include <string_view>

using namespace wsdrain::http;
namespace bhttp = boost::beast::http;

namespace {
request_header upgrade_request() {
    request_header req;
    req.method(bhttp::verb::get);
    req.target("/chat");
    req.version(11);
    req.set(bhttp::field::host, "example.com");
    req.set(bhttp::field::upgrade, "websocket");
    req.set(bhttp::field::connection, "keep-alive, Upgrade");
    req.set(bhttp::field::sec_websocket_key, "dGhlIHNhbXBsZSBub25jZQ==");
    req.set(bhttp::field::sec_websocket_version, "13");
    return req;
}
}  // namespace

TEST(forwarding, accepts_a_valid_upgrade_and_says_what_is_wrong_otherwise) {
    EXPECT_FALSE(check_websocket_request(upgrade_request()));
    auto r = upgrade_request();
    r.set(bhttp::field::sec_websocket_version, "8");
    EXPECT_EQ(check_websocket_request(r)->status, bhttp::status::upgrade_required);
    r = upgrade_request();
    r.set(bhttp::field::sec_websocket_key, "short");
    EXPECT_EQ(check_websocket_request(r)->status, bhttp::status::bad_request);
    r = upgrade_request();
    r.set(bhttp::field::connection, "keep-alive");
    EXPECT_NE(check_websocket_request(r)->reason.find("Connection"), std::string::npos);
    r = upgrade_request();
    r.method(bhttp::verb::post);
    EXPECT_TRUE(check_websocket_request(r));
}

TEST(forwarding, strips_hop_by_hop_headers_and_those_connection_names) {
    request_header req;
    req.set(bhttp::field::connection, "close, X-Secret");
    req.set("X-Secret", "1");
    req.set(bhttp::field::keep_alive, "timeout=5");
    req.set(bhttp::field::proxy_connection, "keep-alive");
    req.set(bhttp::field::te, "trailers");
    req.set("X-Kept", "yes");
    strip_hop_by_hop(req);
    EXPECT_EQ(req.count("X-Secret"), 0u);
    EXPECT_EQ(req.count(bhttp::field::connection), 0u);
    EXPECT_EQ(req.count(bhttp::field::keep_alive), 0u);
    EXPECT_EQ(req.count(bhttp::field::proxy_connection), 0u);
    EXPECT_EQ(req.count(bhttp::field::te), 0u);
    EXPECT_EQ(req["X-Kept"], "yes");
}

TEST(forwarding, keeps_host_and_content_length_even_when_connection_names_them) {
    // Without Content-Length the backend would read this body as its next request (found with
    // tests/fuzz/fuzz_http_request).
    request_header req;
    req.method(bhttp::verb::post);
    req.set(bhttp::field::host, "example.com");
    req.set(bhttp::field::connection, "keep-alive, Content-Length");
    req.insert(bhttp::field::connection, "Host, X-Secret");
    req.set(bhttp::field::content_length, "34");
    req.set("X-Secret", "1");
    prepare_upstream_request(req, {"127.0.0.1", false});
    EXPECT_EQ(req[bhttp::field::content_length], "34");
    EXPECT_EQ(req[bhttp::field::host], "example.com");
    EXPECT_EQ(req.count("X-Secret"), 0u) << "named on the second Connection line";
    EXPECT_EQ(req.count(bhttp::field::connection), 0u);
}

TEST(forwarding, adds_x_forwarded_headers_to_a_plain_request) {
    request_header req;
    req.method(bhttp::verb::get);
    req.set(bhttp::field::host, "example.com");
    req.set("X-Forwarded-For", "10.0.0.1");
    req.set("X-Forwarded-Proto", "https");  // the client's say is not taken
    prepare_upstream_request(req, {"192.0.2.7", false});
    EXPECT_EQ(req["X-Forwarded-For"], "10.0.0.1, 192.0.2.7");
    EXPECT_EQ(req["X-Forwarded-Proto"], "http");
    EXPECT_EQ(req["X-Forwarded-Host"], "example.com");
    EXPECT_EQ(req.version(), 11u);
}

TEST(forwarding, writes_an_upgrade_for_the_backend_with_its_headers_in_order_and_the_upgrade_kept) {
    auto req = upgrade_request();
    req.set("X-Forwarded-For", "10.0.0.1");
    req.insert("x-forwarded-for", "10.0.0.2");  // a second line: only the first is appended to
    req.set("X-Forwarded-Host", "spoofed");
    req.set(bhttp::field::cookie, "a=1");
    EXPECT_EQ(upstream_upgrade_request(req, {"192.0.2.7", false}),
              "GET /chat HTTP/1.1\r\n"
              "Host: example.com\r\n"
              "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
              "Sec-WebSocket-Version: 13\r\n"
              "Cookie: a=1\r\n"
              "X-Forwarded-For: 10.0.0.1, 192.0.2.7\r\n"
              "X-Forwarded-Proto: http\r\n"
              "X-Forwarded-Host: example.com\r\n"
              "Connection: Upgrade\r\n"
              "Upgrade: websocket\r\n"
              "\r\n");
}

TEST(forwarding, an_upgrade_loses_what_its_connection_lines_name_but_host) {
    auto req = upgrade_request();
    req.set(bhttp::field::connection, "Upgrade, X-Secret");
    req.insert(bhttp::field::connection, "host, x-forwarded-for, Cookie");
    req.set("X-Secret", "1");
    req.set("X-Forwarded-For", "10.0.0.1");
    req.set(bhttp::field::cookie, "a=1");
    req.set(bhttp::field::keep_alive, "timeout=5");
    req.set(bhttp::field::te, "trailers");
    req.set(bhttp::field::proxy_connection, "keep-alive");
    req.set("X-Kept", "yes");
    const std::string wire = upstream_upgrade_request(req, {"2001:db8::7", true});
    EXPECT_EQ(wire,
              "GET /chat HTTP/1.1\r\n"
              "Host: example.com\r\n"
              "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
              "Sec-WebSocket-Version: 13\r\n"
              "X-Kept: yes\r\n"
              "X-Forwarded-For: 2001:db8::7\r\n"
              "X-Forwarded-Proto: https\r\n"
              "X-Forwarded-Host: example.com\r\n"
              "Connection: Upgrade\r\n"
              "Upgrade: websocket\r\n"
              "\r\n");
}

TEST(forwarding, writes_a_response_header_as_beast_does) {
    // The 101 goes to the client as the backend sent it; Beast's serializer is the reference.
    for (const unsigned version : {10u, 11u}) {
        response_header res;
        res.version(version);
        res.result(bhttp::status::switching_protocols);
        res.set(bhttp::field::upgrade, "websocket");
        res.set(bhttp::field::connection, "Upgrade");
        res.set(bhttp::field::sec_websocket_accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        res.insert("x-trace", "a");
        res.insert("X-Trace", "b");
        std::ostringstream beast_text;
        beast_text << res;
        EXPECT_EQ(header_text(res), beast_text.str()) << "no reason phrase given";
        res.reason("Okay then");
        beast_text.str("");
        beast_text << res;
        EXPECT_EQ(header_text(res), beast_text.str());
    }
}

TEST(forwarding, keeps_chunked_framing_of_a_plain_request) {
    request_header req;
    req.method(bhttp::verb::post);
    req.set(bhttp::field::transfer_encoding, "gzip, chunked");
    req.set(bhttp::field::host, "h");
    prepare_upstream_request(req, {"127.0.0.1", true});
    EXPECT_EQ(req[bhttp::field::transfer_encoding], "chunked");
    EXPECT_EQ(req["X-Forwarded-Proto"], "https");
    EXPECT_EQ(req.count(bhttp::field::upgrade), 0u);
}

TEST(forwarding, keeps_chunked_framing_given_on_several_transfer_encoding_lines) {
    // Beast's parser frames this body as chunked. Forwarded without "Transfer-Encoding: chunked",
    // the backend would take the body for its next request (found by tests/fuzz/fuzz_http_request).
    const std::string_view head = "POST /upload HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n"
                                  "Transfer-Encoding: chunked\r\n\r\n";
    bhttp::request_parser<bhttp::empty_body> parser;
    boost::system::error_code ec;
    parser.put(boost::asio::buffer(head.data(), head.size()), ec);
    ASSERT_TRUE(parser.is_header_done()) << ec.message();
    ASSERT_TRUE(parser.chunked());
    request_header req = parser.get().base();
    prepare_upstream_request(req, {"127.0.0.1", false});
    EXPECT_EQ(req.count(bhttp::field::transfer_encoding), 1u);
    EXPECT_EQ(req[bhttp::field::transfer_encoding], "chunked");
}

TEST(forwarding, knows_which_rsv_bits_the_negotiated_extensions_use) {
    response_header res;
    EXPECT_EQ(negotiated_rsv_bits(res), 0);
    res.set(bhttp::field::sec_websocket_extensions, "permessage-deflate; client_max_window_bits=15");
    EXPECT_EQ(negotiated_rsv_bits(res), 0x40);
    res.set(bhttp::field::sec_websocket_extensions, "x-unknown");
    EXPECT_EQ(negotiated_rsv_bits(res), 0x70);
}
