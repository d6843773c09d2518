// TLS termination (wss:// in front of a plain ws backend), TLS to backends, and the
// certificate reloaded on SIGHUP. Certificates are made for each test with Debian's openssl.
#include <gtest/gtest.h>

#include <boost/asio/ssl.hpp>
#include <boost/beast/core/buffers_to_string.hpp>
#include <boost/beast/ssl.hpp>

#include <openssl/x509.h>

#include <csignal>
#include <filesystem>
#include <fstream>

#include "harness.hpp"

using namespace wsdrain::testing;
namespace ssl = boost::asio::ssl;
namespace fs = std::filesystem;

namespace {

// A wss:// client that trusts only `ca` and checks the name "localhost"; every call is bounded.
class wss_client {
public:
    wss_client(std::uint16_t port, const fs::path& ca, const std::string& target = "/")
        : tls_(ssl::context::tls_client), ws_(context_, tls_) {
        tls_.load_verify_file(ca.string());
        tls_.set_verify_mode(ssl::verify_peer);
        auto& socket = beast::get_lowest_layer(ws_);
        socket.connect({asio::ip::make_address("127.0.0.1"), port});
        SSL_set_tlsext_host_name(ws_.next_layer().native_handle(), "localhost");
        ws_.next_layer().set_verify_callback(ssl::host_name_verification("localhost"));
        beast::error_code result;
        ws_.next_layer().async_handshake(ssl::stream_base::client, [&](beast::error_code ec) { result = ec; });
        run_bounded(context_, socket);
        if (result) throw beast::system_error(result);
        ws_.async_handshake("localhost", target, [&](beast::error_code ec) { result = ec; });
        run_bounded(context_, socket);
        if (result) throw beast::system_error(result);
    }

    // The common name of the certificate the proxy presented.
    std::string peer_common_name() {
        X509* peer = SSL_get1_peer_certificate(ws_.next_layer().native_handle());
        if (!peer) return {};
        char cn[256] = {};
        X509_NAME_get_text_by_NID(X509_get_subject_name(peer), NID_commonName, cn, sizeof cn);
        X509_free(peer);
        return cn;
    }

    std::string echo(const std::string& message, bool text = true) {
        ws_.text(text);
        beast::error_code result;
        ws_.async_write(asio::buffer(message), [&](beast::error_code ec, std::size_t) { result = ec; });
        run_bounded(context_, beast::get_lowest_layer(ws_));
        if (result) throw beast::system_error(result);
        beast::flat_buffer b;
        ws_.async_read(b, [&](beast::error_code ec, std::size_t) { result = ec; });
        run_bounded(context_, beast::get_lowest_layer(ws_));
        if (result) throw beast::system_error(result);
        return beast::buffers_to_string(b.data());
    }

    // Reads until the proxy's Close (Beast answers it, then closes TLS and TCP); its code, or
    // 1006 when the stream ended another way.
    std::uint16_t wait_close() {
        for (;;) {
            beast::flat_buffer b;
            beast::error_code result;
            ws_.async_read(b, [&](beast::error_code ec, std::size_t) { result = ec; });
            run_bounded(context_, beast::get_lowest_layer(ws_));
            if (result == websocket::error::closed) return static_cast<std::uint16_t>(ws_.reason().code);
            if (result) {
                ADD_FAILURE() << "wss_client: " << result.message() << " (close code seen: " << ws_.reason().code << ")";
                return 1006;
            }
        }
    }

    // Sends Close `code` and reads until the answering Close; returns its code.
    std::uint16_t close(std::uint16_t code = 1000) {
        beast::error_code result;
        ws_.async_close(websocket::close_reason(static_cast<websocket::close_code>(code)),
                        [&](beast::error_code ec) { result = ec; });
        run_bounded(context_, beast::get_lowest_layer(ws_));
        if (result) throw beast::system_error(result);
        return static_cast<std::uint16_t>(ws_.reason().code);
    }

private:
    asio::io_context context_;
    ssl::context tls_;
    websocket::stream<ssl::stream<tcp::socket>> ws_;
};

// One HTTPS request through the proxy; the status and body.
std::pair<unsigned, std::string> https_get(std::uint16_t port, const fs::path& ca, const std::string& target) {
    asio::io_context ctx;
    ssl::context tls(ssl::context::tls_client);
    tls.load_verify_file(ca.string());
    tls.set_verify_mode(ssl::verify_peer);
    ssl::stream<tcp::socket> stream(ctx, tls);
    stream.next_layer().connect({asio::ip::make_address("127.0.0.1"), port});
    beast::error_code result;
    stream.async_handshake(ssl::stream_base::client, [&](beast::error_code ec) { result = ec; });
    run_bounded(ctx, stream.next_layer());
    if (result) throw beast::system_error(result);
    bhttp::request<bhttp::empty_body> req{bhttp::verb::get, target, 11};
    req.set(bhttp::field::host, "localhost");
    bhttp::response<bhttp::string_body> res;
    beast::flat_buffer b;
    bhttp::async_write(stream, req, [&](beast::error_code ec, std::size_t) { result = ec; });
    run_bounded(ctx, stream.next_layer());
    if (result) throw beast::system_error(result);
    bhttp::async_read(stream, b, res, [&](beast::error_code ec, std::size_t) { result = ec; });
    run_bounded(ctx, stream.next_layer());
    if (result) throw beast::system_error(result);
    return {res.result_int(), res.body()};
}

wsdrain::config::proxy_config tls_config(std::uint16_t backend_port, const certificate& c) {
    auto cfg = local_config({backend_port});
    cfg.tls = wsdrain::config::tls_config{c.cert.string(), c.key.string()};
    return cfg;
}

void write_file(const fs::path& p, const std::string& text) {
    std::ofstream(p, std::ios::trunc) << text;
}

std::string read_file(const fs::path& p) {
    std::ifstream in(p);
    return {std::istreambuf_iterator<char>(in), {}};
}

}  // namespace

TEST(tls, wss_reaches_a_plain_backend_through_the_proxy) {
    const temp_dir dir;
    const certificate c = make_certificate(dir, "wsdrain-test");
    backend b{named("plain")};
    proxy px{tls_config(b.port(), c)};

    wss_client client{px.port(), c.cert};
    EXPECT_EQ(client.peer_common_name(), "wsdrain-test");
    EXPECT_EQ(client.echo("hello over tls"), "hello over tls");
    // Larger than a TLS record and than the proxy's read: many records each way.
    std::string big(3 * 1024 * 1024 + 17, '\0');
    for (std::size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>(i * 31 % 251);
    EXPECT_EQ(client.echo(big, false), big);
    EXPECT_EQ(client.close(1000), 1000);

    for (int i = 0; i < 100 && b.ended().empty(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(20));
    ASSERT_EQ(b.ended().size(), 1u);
    EXPECT_TRUE(b.ended()[0].close_frame);
    EXPECT_EQ(b.ended()[0].code, 1000);
    const std::string closed = R"(wsdrain_sessions_closed_total{reason="client",upstream="app"})";
    for (int i = 0; i < 100 && metric(scrape(px.admin_port()), closed) != 1; ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    EXPECT_EQ(metric(scrape(px.admin_port()), closed), 1);
}

TEST(tls, a_drain_closes_wss_sessions_with_1001_and_a_clean_handshake_on_both_legs) {
    const temp_dir dir;
    const certificate c = make_certificate(dir, "wsdrain-test");
    backend b{named("plain")};
    auto cfg = tls_config(b.port(), c);
    cfg.drain.spread = std::chrono::milliseconds(500);
    proxy px{cfg};
    std::vector<std::unique_ptr<wss_client>> clients;
    for (int i = 0; i < 5; ++i) {
        clients.push_back(std::make_unique<wss_client>(px.port(), c.cert));
        EXPECT_EQ(clients.back()->echo("before " + std::to_string(i)), "before " + std::to_string(i));
    }
    ASSERT_EQ(http_request(px.admin_port(), bhttp::verb::post, "/drain").status, 202u);
    for (auto& client : clients) EXPECT_EQ(client->wait_close(), 1001);

    for (int i = 0; i < 100 && b.ended().size() < 5; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(20));
    ASSERT_EQ(b.ended().size(), 5u);
    for (const auto& e : b.ended()) EXPECT_TRUE(e.close_frame && e.code == 1001);
    const std::string clean = R"(wsdrain_sessions_closed_total{reason="drain_clean",upstream="app"})";
    for (int i = 0; i < 100 && metric(scrape(px.admin_port()), clean) != 5; ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    EXPECT_EQ(metric(scrape(px.admin_port()), clean), 5);
}

TEST(tls, https_requests_are_proxied_to_the_plain_backend) {
    const temp_dir dir;
    const certificate c = make_certificate(dir, "wsdrain-test");
    backend b{named("plain")};
    proxy px{tls_config(b.port(), c)};
    const auto [status, body] = https_get(px.port(), c.cert, "/hello");
    EXPECT_EQ(status, 200u);
    EXPECT_EQ(body, "plain /hello");
}

TEST(tls, a_client_speaking_plain_http_to_the_tls_port_is_dropped_and_others_go_on) {
    const temp_dir dir;
    const certificate c = make_certificate(dir, "wsdrain-test");
    backend b{named("plain")};
    proxy px{tls_config(b.port(), c)};

    // No HTTP answer comes back in plain text: the TLS handshake fails and the connection ends.
    EXPECT_THROW(http_request(px.port(), bhttp::verb::get, "/"), beast::system_error);

    wss_client client{px.port(), c.cert};
    EXPECT_EQ(client.echo("still serving"), "still serving");
}

TEST(tls, a_missing_or_mismatched_certificate_stops_the_start_with_the_file_named) {
    const temp_dir dir;
    const certificate a = make_certificate(dir, "a");
    const certificate other = make_certificate(dir, "other");
    const auto start_error = [](const fs::path& cert, const fs::path& key) {
        auto cfg = local_config({9});
        cfg.tls = wsdrain::config::tls_config{cert.string(), key.string()};
        wsdrain::app::server s{cfg};
        try {
            s.start();
        } catch (const std::exception& e) {
            return std::string(e.what());
        }
        return std::string("started");
    };
    const std::string missing = start_error(dir.path / "nope.crt", a.key);
    EXPECT_NE(missing.find("tls.cert " + (dir.path / "nope.crt").string()), std::string::npos) << missing;
    const std::string mismatch = start_error(a.cert, other.key);
    EXPECT_NE(mismatch.find("tls.key " + other.key.string()), std::string::npos) << mismatch;
    EXPECT_NE(mismatch.find("mismatch"), std::string::npos) << mismatch;
}

TEST(tls, sighup_gives_new_sessions_the_new_certificate_and_old_sessions_stay_open) {
    const temp_dir dir;
    const certificate first = make_certificate(dir, "first");
    const certificate second = make_certificate(dir, "second");
    const fs::path cert = dir.path / "tls.crt", key = dir.path / "tls.key";
    fs::copy_file(first.cert, cert);
    fs::copy_file(first.key, key);
    backend b{named("plain")};
    const std::uint16_t port = free_port(), admin = free_port();
    const fs::path config = dir.path / "wsdrain.yaml";
    write_file(config, "listen: 127.0.0.1:" + std::to_string(port) + "\nadmin: {listen: 127.0.0.1:" +
                           std::to_string(admin) + "}\ntls: {cert: " + cert.string() + ", key: " + key.string() +
                           "}\nupstreams: [{name: app, endpoints: [127.0.0.1:" + std::to_string(b.port()) + "]}]\n");
    process px{binary_path("wsdrain"), {"--config", config.string()}, true};
    const auto wait_for_log = [&px](const std::string& text) {
        for (int i = 0; i < 100; ++i) {
            const std::string line = px.read_line();
            if (line.find(text) != std::string::npos) return line;
            if (line.empty()) break;  // nothing for 10 s
        }
        return std::string("no log line with: ") + text;
    };
    ASSERT_NE(wait_for_log("wsdrain started").find("tls=on"), std::string::npos);

    wss_client old_session{port, first.cert};
    EXPECT_EQ(old_session.peer_common_name(), "first");

    // A broken certificate file: the reload is refused and the old certificate stays.
    write_file(cert, "not a certificate\n");
    px.kill(SIGHUP);
    const std::string failed = wait_for_log("TLS reload failed");
    EXPECT_NE(failed.find(cert.string()), std::string::npos) << failed;
    EXPECT_EQ(wss_client(port, first.cert).peer_common_name(), "first");

    // The new certificate: picked up by new sessions.
    write_file(cert, read_file(second.cert));
    write_file(key, read_file(second.key));
    px.kill(SIGHUP);
    const std::string reloaded = wait_for_log("TLS certificate reloaded");
    EXPECT_NE(reloaded.find(cert.string()), std::string::npos) << reloaded;
    wss_client new_session{port, second.cert};
    EXPECT_EQ(new_session.peer_common_name(), "second");
    EXPECT_EQ(new_session.echo("new"), "new");

    // The session made before both reloads is still open and working.
    EXPECT_EQ(old_session.echo("old, still here"), "old, still here");
    EXPECT_EQ(old_session.close(1000), 1000);
    EXPECT_EQ(new_session.close(1000), 1000);
    px.kill(SIGTERM);
    EXPECT_EQ(px.wait(), 0);
}

TEST(tls, python_websockets_speaks_wss_through_the_proxy) {
    if (!fs::exists("/usr/bin/python3")) GTEST_SKIP() << "no /usr/bin/python3";
    const temp_dir dir;
    const certificate c = make_certificate(dir, "wsdrain-test");
    process server{"/usr/bin/python3", {source_path("tests/peers/py_echo_server.py")}};
    const std::string line = server.read_line();
    ASSERT_TRUE(line.starts_with("listening on ")) << "python echo server did not start: " << line;
    proxy px{tls_config(static_cast<std::uint16_t>(std::stoi(line.substr(13))), c)};

    process client{"/usr/bin/python3", {source_path("tests/peers/py_client.py"),
                                        "wss://localhost:" + std::to_string(px.port()) + "/", "--cafile",
                                        c.cert.string()}};
    const std::string out = client.read_all(std::chrono::seconds(60));
    EXPECT_EQ(client.wait(), 0) << out;
    EXPECT_NE(out.find("extensions: permessage-deflate"), std::string::npos) << out;
    EXPECT_NE(out.find("echo: ok"), std::string::npos) << out;
    EXPECT_NE(out.find("close: 1000"), std::string::npos) << out;
}

TEST(tls, the_proxy_speaks_tls_to_a_backend_that_asks_for_it) {
    if (!fs::exists("/usr/bin/python3")) GTEST_SKIP() << "no /usr/bin/python3";
    const temp_dir dir;
    const certificate c = make_certificate(dir, "backend");
    process server{"/usr/bin/python3",
                   {source_path("tests/peers/py_echo_server.py"), "--cert", c.cert.string(), "--key", c.key.string()}};
    const std::string line = server.read_line();
    ASSERT_TRUE(line.starts_with("listening on ")) << "python echo server did not start: " << line;
    auto cfg = local_config({static_cast<std::uint16_t>(std::stoi(line.substr(13)))});

    {  // Without upstreams[].tls the backend cannot understand the proxy: 502.
        proxy px{cfg};
        const auto r = http_request(px.port(), bhttp::verb::get, "/",
                                    {}, {{"Upgrade", "websocket"}, {"Connection", "Upgrade"},
                                         {"Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="}, {"Sec-WebSocket-Version", "13"}});
        EXPECT_EQ(r.status, 502u) << r.body;
    }
    cfg.upstreams[0].tls = true;
    proxy px{cfg};
    ws_client client{px.port()};
    std::string big(200 * 1024, 'x');
    client.send_binary(big);
    EXPECT_EQ(client.receive(), big);
    client.send_text("over tls to the backend");
    EXPECT_EQ(client.receive(), "over tls to the backend");
    client.close(1000);
    const std::string closed = R"(wsdrain_sessions_closed_total{reason="client",upstream="app"})";
    for (int i = 0; i < 100 && metric(scrape(px.admin_port()), closed) != 1; ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    EXPECT_EQ(metric(scrape(px.admin_port()), closed), 1);
}
