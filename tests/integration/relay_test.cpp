// WebSocket sessions through a real proxy to a real Beast backend, over loopback.
#include <gtest/gtest.h>

#include <sys/socket.h>

#include <algorithm>
#include <thread>

#include <boost/asio/read_until.hpp>
#include <boost/asio/write.hpp>

#include "harness.hpp"

using namespace wsdrain::testing;

namespace {

struct relay : ::testing::Test {
    backend app{{"app", "127.0.0.1", 0, {"chat", "superchat"}, false}};
    proxy px{local_config({app.port()})};
};

std::string pattern(std::size_t n, char seed) {
    std::string s(n, '\0');
    for (std::size_t i = 0; i < n; ++i) s[i] = static_cast<char>(seed + i % 23);
    return s;
}

}  // namespace

TEST_F(relay, echoes_text_and_binary_messages_of_every_length_class) {
    ws_client c{px.port()};
    for (std::size_t n : {0u, 1u, 125u, 126u, 65535u, 65536u, 1u << 20}) {
        const std::string text = pattern(n, 'a');
        c.send_text(text);
        EXPECT_EQ(c.receive(), text) << n;
        EXPECT_TRUE(c.ws().got_text());
        std::string bin = pattern(n, '\0');
        c.send_binary(bin);
        EXPECT_EQ(c.receive(), bin) << n;
        EXPECT_TRUE(c.ws().got_binary());
    }
    c.close(1000);
}

TEST_F(relay, keeps_fragmented_messages_whole_with_pings_between_fragments) {
    raw_client c{px.port()};
    c.send_frame(0x1, "hel", true, false);
    c.send_frame(0x9, "between", true);  // a control frame inside the message
    c.send_frame(0x0, "lo ", true, false);
    c.send_frame(0x0, "world", true, true);
    std::string message;
    bool got_pong = false;
    while (message.size() < 11) {
        auto f = c.read_frame();
        ASSERT_TRUE(f);
        EXPECT_FALSE(f->masked) << "frames to a client are never masked";
        if (f->opcode == 0xA) {
            EXPECT_EQ(f->payload, "between");  // the backend's Pong, relayed
            got_pong = true;
        } else {
            message += f->payload;
        }
    }
    EXPECT_EQ(message, "hello world");
    if (!got_pong) {
        auto f = c.read_frame();
        ASSERT_TRUE(f);
        EXPECT_EQ(f->opcode, 0xA);
    }
}

TEST_F(relay, relays_client_pings_to_the_backend_and_its_pongs_back) {
    ws_client c{px.port()};
    std::string pong;
    c.ws().control_callback([&](websocket::frame_type kind, beast::string_view payload) {
        if (kind == websocket::frame_type::pong) pong = std::string(payload);
    });
    c.ws().ping("are you there");
    c.send_text("after ping");
    EXPECT_EQ(c.receive(), "after ping");
    EXPECT_EQ(pong, "are you there");
}

TEST_F(relay, two_hundred_concurrent_sessions_lose_reorder_and_cross_nothing) {
    constexpr int sessions = 200, messages = 20;
    std::vector<std::unique_ptr<ws_client>> clients;
    for (int i = 0; i < sessions; ++i) clients.push_back(std::make_unique<ws_client>(px.port()));
    for (int m = 0; m < messages; ++m)
        for (int i = 0; i < sessions; ++i) clients[i]->send_text("S" + std::to_string(i) + " M" + std::to_string(m));
    for (int i = 0; i < sessions; ++i)
        for (int m = 0; m < messages; ++m)
            ASSERT_EQ(clients[i]->receive(), "S" + std::to_string(i) + " M" + std::to_string(m));
    EXPECT_EQ(app.sessions_open(), sessions);
    for (auto& c : clients) c->close(1000);
}

TEST_F(relay, negotiates_the_subprotocol_end_to_end) {
    ws_client c{px.port(), "/", {"unknown", "superchat", "chat"}};
    EXPECT_EQ(c.header("Sec-WebSocket-Protocol"), "superchat");  // the backend's choice
    EXPECT_EQ(c.header("X-Backend"), "app");
}

TEST_F(relay, a_client_close_reaches_the_backend_and_its_answer_comes_back) {
    ws_client c{px.port()};
    c.send_text("hi");
    EXPECT_EQ(c.receive(), "hi");
    c.close(4321);  // Beast's close() waits for the answering Close
    for (int i = 0; i < 200 && app.ended().empty(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    ASSERT_EQ(app.ended().size(), 1u);
    EXPECT_TRUE(app.ended()[0].close_frame);
    EXPECT_EQ(app.ended()[0].code, 4321);
}

TEST(relay_close, a_completed_closing_handshake_frees_the_session_without_waiting_for_the_clients_fin) {
    // Once Close went both ways and nothing is left unread, the proxy closes the connection
    // (a FIN, not a reset): a client that keeps its socket open holds nothing in the proxy.
    backend app{{}};
    auto cfg = local_config({app.port()});
    cfg.drain.close_timeout = std::chrono::seconds(10);  // what a lingering close would wait for
    proxy px{cfg};
    const auto open_sessions = [&] {
        return metric(scrape(px.admin_port()), R"(wsdrain_sessions_active{upstream="app"})");
    };
    raw_client c{px.port()};
    c.send_frame(0x1, "hello");
    auto echo = c.read_frame();
    ASSERT_TRUE(echo);
    c.send_frame(0x8, std::string("\x03\xe8", 2));  // Close 1000
    auto answer = c.read_frame();
    ASSERT_TRUE(answer);
    EXPECT_EQ(answer->opcode, 0x8);
    EXPECT_EQ(answer->close_code(), 1000);
    EXPECT_TRUE(c.at_eof()) << "the proxy's FIN follows its Close";
    EXPECT_TRUE(wait_for([&] { return open_sessions() == 0; }, std::chrono::seconds(2)))
        << "the session waited for the client's FIN";
    ASSERT_TRUE(wait_for([&] { return app.ended().size() == 1; }, std::chrono::seconds(2)));
    EXPECT_EQ(app.ended()[0].code, 1000);
}

TEST_F(relay, a_backend_close_reaches_the_client) {
    ws_client c{px.port()};
    c.send_text("close-me");
    std::string reason;
    EXPECT_EQ(c.wait_close(&reason), 4000);
    EXPECT_EQ(reason, "backend says bye");
}

TEST_F(relay, counts_upgrades_frames_and_closes_in_metrics) {
    {
        ws_client c{px.port()};
        c.send_text("one");
        c.receive();
        c.close(1000);
    }
    std::string text;
    for (int i = 0; i < 200; ++i) {  // the session's end is published when its sockets close
        text = scrape(px.admin_port());
        if (metric(text, R"(wsdrain_sessions_closed_total{reason="client",upstream="app"})") == 1) break;
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    EXPECT_EQ(metric(text, R"(wsdrain_upgrades_total{result="ok",upstream="app"})"), 1);
    EXPECT_EQ(metric(text, R"(wsdrain_sessions_closed_total{reason="client",upstream="app"})"), 1);
    EXPECT_EQ(metric(text, R"(wsdrain_sessions_active{upstream="app"})"), 0);
    EXPECT_GE(metric(text, R"(wsdrain_frames_total{direction="to_backend"})"), 2);  // text + Close
    EXPECT_GE(metric(text, R"(wsdrain_frames_total{direction="to_client"})"), 2);
    EXPECT_GT(metric(text, R"(wsdrain_bytes_total{direction="to_backend"})"), 10);
    EXPECT_EQ(metric(text, "wsdrain_state"), 0);
    EXPECT_EQ(metric(text, R"(wsdrain_upgrades_total{result="rejected_limit",upstream="app"})"), 0);
    EXPECT_EQ(metric(text, R"(wsdrain_upstream_endpoint_up{endpoint="127.0.0.1:)" + std::to_string(app.port()) +
                               R"(",upstream="app"})"),
              1);
}

TEST_F(relay, frames_trickled_one_byte_at_a_time_arrive_whole) {
    raw_client c{px.port()};
    asio::ip::tcp::no_delay nodelay(true);
    c.socket().set_option(nodelay);
    // A 16-bit-length text frame, a Ping and a small binary frame, each split at every byte:
    // the proxy sees headers and control frames cut across reads.
    const std::string wire = encode_frame(0x1, std::string(300, 't'), true) + encode_frame(0x9, "ping!", true) +
                             encode_frame(0x2, "bin", true);
    for (char byte : wire) {
        c.send_bytes(std::string(1, byte));
        std::this_thread::sleep_for(std::chrono::microseconds(300));
    }
    std::vector<raw_frame> got;
    while (got.size() < 3) {
        auto f = c.read_frame();
        ASSERT_TRUE(f) << "after " << got.size() << " frames";
        got.push_back(*f);
    }
    std::sort(got.begin(), got.end(), [](const raw_frame& a, const raw_frame& b) { return a.opcode < b.opcode; });
    EXPECT_EQ(got[0].opcode, 0x1);
    EXPECT_EQ(got[0].payload, std::string(300, 't'));
    EXPECT_EQ(got[1].opcode, 0x2);
    EXPECT_EQ(got[1].payload, "bin");
    EXPECT_EQ(got[2].opcode, 0xA);  // the backend's Pong to the trickled Ping
    EXPECT_EQ(got[2].payload, "ping!");
}

TEST_F(relay, frames_sent_with_the_upgrade_request_are_relayed_after_the_handshake) {
    // A client should wait for the 101 before it sends (RFC 6455 section 4.1); one that does
    // not loses nothing: what follows the request's header in the same read, here past the
    // proxy's first read of 1 KiB, goes to the backend once the session is up.
    asio::io_context ctx;
    tcp::socket s(ctx);
    s.connect({asio::ip::make_address("127.0.0.1"), px.port()});
    const timeval bound{10, 0};
    ::setsockopt(s.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &bound, sizeof bound);
    const std::string request =
        "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
    const std::string big(2000, 'b');
    asio::write(s, asio::buffer(request + encode_frame(0x1, "sent early", true) + encode_frame(0x2, big, true)));
    std::string in;
    const std::size_t header = asio::read_until(s, asio::dynamic_buffer(in), "\r\n\r\n");
    ASSERT_TRUE(in.starts_with("HTTP/1.1 101 ")) << in;
    const std::string echoes = encode_frame(0x1, "sent early", false) + encode_frame(0x2, big, false);
    beast::error_code ec;
    while (in.size() < header + echoes.size() && !ec) {
        char chunk[4096];
        in.append(chunk, s.read_some(asio::buffer(chunk), ec));
    }
    EXPECT_EQ(in.substr(header), echoes) << ec.message();
}

TEST(relay_timeouts, a_session_outlives_the_request_header_timeout) {
    backend app{{}};
    auto cfg = local_config({app.port()});
    cfg.limits.header_timeout = std::chrono::milliseconds(300);  // bounds the handshake only
    proxy px{cfg};
    ws_client c{px.port()};
    std::this_thread::sleep_for(std::chrono::milliseconds(900));
    c.send_text("still open");
    EXPECT_EQ(c.receive(), "still open");
    c.close(1000);
}
