// Plain HTTP/1.1 through the proxy: streamed bodies, keep-alive, forwarding headers,
// routing by path and host, and least-sessions balancing of WebSocket sessions.
#include <gtest/gtest.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/write.hpp>

#include <thread>

#include "harness.hpp"

using namespace wsdrain::testing;

namespace {

std::uint64_t fnv1a(std::string_view s) {
    std::uint64_t h = 1469598103934665603ULL;
    for (unsigned char c : s) h = (h ^ c) * 1099511628211ULL;
    return h;
}

std::string body_of(std::size_t n) {
    std::string s(n, '\0');
    for (std::size_t i = 0; i < n; ++i) s[i] = static_cast<char>(i * 7 + i / 251);
    return s;
}

}  // namespace

TEST(http, get_is_proxied_with_forwarding_headers) {
    backend app{{}};
    proxy px{local_config({app.port()})};
    auto r = http_request(px.port(), bhttp::verb::get, "/some/path?q=1", {}, {{"X-Forwarded-For", "10.1.2.3"}});
    EXPECT_EQ(r.status, 200u);
    EXPECT_EQ(r.body, "backend /some/path?q=1");
    EXPECT_EQ(r.headers["Echo-X-Forwarded-For"], "10.1.2.3, 127.0.0.1");
    EXPECT_EQ(r.headers["Echo-X-Forwarded-Proto"], "http");
    EXPECT_EQ(r.headers["Echo-X-Forwarded-Host"], "127.0.0.1:" + std::to_string(px.port()));
}

TEST(http, a_5_mib_post_body_arrives_whole) {
    backend app{{}};
    proxy px{local_config({app.port()})};
    const std::string body = body_of(5 * 1024 * 1024);
    auto r = http_request(px.port(), bhttp::verb::post, "/upload", body);
    EXPECT_EQ(r.status, 200u);
    EXPECT_EQ(r.body, std::to_string(body.size()) + " " + std::to_string(fnv1a(body)));
}

TEST(http, a_chunked_request_body_is_streamed_to_the_backend) {
    backend app{{}};
    proxy px{local_config({app.port()})};
    asio::io_context ctx;
    tcp::socket s(ctx);
    s.connect({asio::ip::make_address("127.0.0.1"), px.port()});
    std::string body;
    std::string wire = "POST /chunks HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
    for (int i = 0; i < 50; ++i) {
        const std::string piece = body_of(1000 + i * 37).substr(0, 1000 + i * 37);
        body += piece;
        char size[16];
        std::snprintf(size, sizeof size, "%zx\r\n", piece.size());
        wire += size + piece + "\r\n";
    }
    wire += "0\r\n\r\n";
    asio::write(s, asio::buffer(wire));
    beast::flat_buffer buf;
    bhttp::response<bhttp::string_body> res;
    bhttp::read(s, buf, res);
    EXPECT_EQ(res.result_int(), 200u);
    EXPECT_EQ(res.body(), std::to_string(body.size()) + " " + std::to_string(fnv1a(body)));
}

TEST(http, an_empty_chunked_body_ends_once_and_the_connection_goes_on) {
    // The proxy used to forward it as "0\r\n\r\n0\r\n\r\n": the backend took the second
    // last-chunk for a request of its own (found by tests/fuzz/fuzz_http_request).
    backend app{{}};
    proxy px{local_config({app.port()})};
    asio::io_context ctx;
    tcp::socket s(ctx);
    s.connect({asio::ip::make_address("127.0.0.1"), px.port()});
    asio::write(s, asio::buffer(std::string_view("POST /empty HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                                                 "0\r\n\r\n")));
    beast::flat_buffer buf;
    bhttp::response<bhttp::string_body> res;
    bhttp::read(s, buf, res);
    EXPECT_EQ(res.result_int(), 200u);
    EXPECT_EQ(res.body(), "0 " + std::to_string(fnv1a("")));
    bhttp::request<bhttp::empty_body> next{bhttp::verb::get, "/after", 11};
    next.set(bhttp::field::host, "x");
    bhttp::write(s, next);
    bhttp::response<bhttp::string_body> second;
    bhttp::read(s, buf, second);
    EXPECT_EQ(second.result_int(), 200u);
    EXPECT_EQ(second.body(), "backend /after");
}

TEST(http, a_large_response_streams_to_the_client) {
    backend app{{}};
    proxy px{local_config({app.port()})};
    auto r = http_request(px.port(), bhttp::verb::get, "/bytes/8000000");
    EXPECT_EQ(r.status, 200u);
    EXPECT_EQ(r.body.size(), 8000000u);
}

TEST(http, keep_alive_serves_several_requests_on_one_connection) {
    backend app{{}};
    proxy px{local_config({app.port()})};
    asio::io_context ctx;
    tcp::socket s(ctx);
    s.connect({asio::ip::make_address("127.0.0.1"), px.port()});
    beast::flat_buffer buf;
    for (int i = 0; i < 3; ++i) {
        bhttp::request<bhttp::empty_body> req{bhttp::verb::get, "/n" + std::to_string(i), 11};
        req.set(bhttp::field::host, "x");
        bhttp::write(s, req);
        bhttp::response<bhttp::string_body> res;
        bhttp::read(s, buf, res);
        EXPECT_EQ(res.body(), "backend /n" + std::to_string(i));
        EXPECT_TRUE(res.keep_alive());
    }
    bhttp::request<bhttp::empty_body> last{bhttp::verb::get, "/bye", 11};
    last.set(bhttp::field::host, "x");
    last.keep_alive(false);
    bhttp::write(s, last);
    bhttp::response<bhttp::string_body> res;
    bhttp::read(s, buf, res);
    EXPECT_FALSE(res.keep_alive());
    beast::error_code ec;
    char c;
    s.read_some(asio::buffer(&c, 1), ec);
    EXPECT_EQ(ec, asio::error::eof) << "the proxy closes after Connection: close";
}

TEST(http, a_request_header_is_read_whole_however_it_arrives) {
    // The first recv of a new connection takes up to 1 KiB and parses it at once; a header that
    // is not all there by then, or not there at all, is read on by the reactor.
    backend app{{}};
    proxy px{local_config({app.port()})};
    // Each piece is written after a pause (the first too, when it is empty).
    const auto exchange = [&](const std::vector<std::string>& pieces) {
        asio::io_context ctx;
        tcp::socket s(ctx);
        s.connect({asio::ip::make_address("127.0.0.1"), px.port()});
        for (std::size_t i = 0; i < pieces.size(); ++i) {
            if (i > 0) std::this_thread::sleep_for(std::chrono::milliseconds(50));
            asio::write(s, asio::buffer(pieces[i]));
        }
        beast::flat_buffer buf;
        bhttp::response<bhttp::string_body> res;
        bhttp::read(s, buf, res);
        return res;
    };
    const std::string start = "GET /pieces HTTP/1.1\r\nHost: x\r\n";
    const std::string filler = "X-Filler: " + std::string(1500, 'f') + "\r\n";  // past the first read
    const std::string last = "X-Forwarded-For: 10.9.8.7\r\nConnection: close\r\n\r\n";
    for (const auto& pieces : std::vector<std::vector<std::string>>{
             {start + last},                       // all there at once
             {"", start + last},                   // the first recv finds nothing
             {start, last},                        // it finds whole lines of the header
             {"GET /pie", "ces HTTP/1.1\r\nHost: x\r\n" + last},  // part of the request line
             {start + filler + last},              // more than it takes, all there
             {start + filler, last},               // more than it takes, then the rest later
         }) {
        const auto res = exchange(pieces);
        EXPECT_EQ(res.result_int(), 200u) << pieces.size() << " pieces, the first of " << pieces[0].size() << " bytes";
        EXPECT_EQ(res.body(), "backend /pieces");
        EXPECT_EQ(res[bhttp::field::connection], "close");
        EXPECT_EQ(res["Echo-X-Forwarded-For"], "10.9.8.7, 127.0.0.1") << "the header's last line reached the backend";
    }
}

TEST(http, routes_by_longest_path_prefix_and_by_host) {
    backend a{named("a")}, b{named("b")}, c{named("c")};
    auto cfg = local_config({a.port()});
    cfg.upstreams.push_back({"b", {{"127.0.0.1", b.port()}}});
    cfg.upstreams.push_back({"c", {{"127.0.0.1", c.port()}}});
    cfg.routes = {{"", "/", "app"}, {"", "/api", "b"}, {"", "/api/v2", "app"}, {"Chat.Example.com", "/", "c"}};
    proxy px{cfg};
    EXPECT_EQ(http_request(px.port(), bhttp::verb::get, "/x").headers["X-Backend"], "a");
    EXPECT_EQ(http_request(px.port(), bhttp::verb::get, "/api/users").headers["X-Backend"], "b");
    EXPECT_EQ(http_request(px.port(), bhttp::verb::get, "/api/v2/users").headers["X-Backend"], "a");
    EXPECT_EQ(http_request(px.port(), bhttp::verb::get, "/", {}, {{"Host", "chat.example.COM:8080"}}).headers["X-Backend"],
              "c");
    ws_client ws{px.port(), "/api/socket"};
    EXPECT_EQ(ws.header("X-Backend"), "b");
}

TEST(http, new_sessions_go_to_the_endpoint_with_the_fewest_sessions) {
    backend a{named("a")}, b{named("b")};
    proxy px{local_config({a.port(), b.port()})};
    std::vector<std::unique_ptr<ws_client>> on_a, on_b;
    for (int i = 0; i < 10; ++i) {
        auto c = std::make_unique<ws_client>(px.port());
        (c->header("X-Backend") == "a" ? on_a : on_b).push_back(std::move(c));
    }
    EXPECT_EQ(on_a.size(), 5u);
    EXPECT_EQ(on_b.size(), 5u);
    // Four sessions on "a" end: the next four all go to "a".
    for (int i = 0; i < 4; ++i) on_a[i]->close();
    for (int i = 0; i < 500 && a.sessions_open() > 1; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    ASSERT_EQ(a.sessions_open(), 1);
    for (int i = 0; i < 500 && metric(scrape(px.admin_port()), R"(wsdrain_sessions_active{upstream="app"})") > 6; ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    for (int i = 0; i < 4; ++i) EXPECT_EQ(ws_client(px.port()).header("X-Backend"), "a") << i;
}

TEST(http, an_endpoint_given_by_name_is_resolved_for_requests_and_sessions) {
    // "localhost" may resolve to ::1 first, where nothing listens: the next address serves.
    backend app{named("app")};
    auto cfg = local_config({});
    cfg.upstreams[0].endpoints.push_back({"localhost", app.port()});
    proxy px{cfg};
    const auto r = http_request(px.port(), bhttp::verb::get, "/by-name");
    EXPECT_EQ(r.status, 200u);
    EXPECT_EQ(r.body, "app /by-name");
    ws_client c{px.port()};
    EXPECT_EQ(c.header("X-Backend"), "app");
    c.send_text("through a name");
    EXPECT_EQ(c.receive(), "through a name");
    c.close();
}
