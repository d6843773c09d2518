// Keepalive Pings to clients: answered ones keep the session, their Pongs are consumed;
// an unanswered one ends the session as idle, with a Close on both legs.
#include <gtest/gtest.h>

#include <thread>

#include "harness.hpp"

using namespace wsdrain::testing;
using namespace std::chrono_literals;

namespace {
wsdrain::config::proxy_config keepalive_config(std::uint16_t backend_port) {
    auto cfg = local_config({backend_port});
    cfg.keepalive.ping_interval = 200ms;
    cfg.keepalive.timeout = 300ms;
    cfg.drain.close_timeout = 500ms;  // a silent client never answers the Close either
    return cfg;
}
}  // namespace

TEST(keepalive, a_silent_client_gets_pings_and_a_client_that_answers_keeps_its_session) {
    backend app{{}};
    proxy px{keepalive_config(app.port())};
    raw_client c{px.port()};
    for (int i = 0; i < 3; ++i) {
        auto ping = c.read_frame();
        ASSERT_TRUE(ping);
        ASSERT_EQ(ping->opcode, 0x9);
        EXPECT_FALSE(ping->masked);
        c.send_frame(0xA, ping->payload);  // the Pong, masked as a client's must be
    }
    c.send_frame(0x1, "still here");
    auto echo = c.read_frame();
    while (echo && echo->opcode == 0x9) echo = c.read_frame();
    ASSERT_TRUE(echo);
    EXPECT_EQ(echo->payload, "still here");
    const auto m = scrape(px.admin_port());
    EXPECT_EQ(metric(m, R"(wsdrain_sessions_closed_total{reason="idle",upstream="app"})"), 0);
    EXPECT_EQ(app.ended().size(), 0u);
}

TEST(keepalive, an_unanswered_ping_ends_the_session_as_idle_with_a_close_on_both_legs) {
    backend app{{}};
    proxy px{keepalive_config(app.port())};
    raw_client c{px.port()};
    auto ping = c.read_frame();
    ASSERT_TRUE(ping);
    EXPECT_EQ(ping->opcode, 0x9);
    auto close = c.read_frame();  // no Pong sent
    ASSERT_TRUE(close);
    EXPECT_EQ(close->opcode, 0x8);
    EXPECT_EQ(close->close_code(), 1001);
    EXPECT_EQ(close->payload.substr(2), "keepalive timeout");
    for (int i = 0; i < 300 && app.ended().empty(); ++i) std::this_thread::sleep_for(10ms);
    ASSERT_EQ(app.ended().size(), 1u);
    EXPECT_TRUE(app.ended()[0].close_frame);
    EXPECT_EQ(app.ended()[0].code, 1001);
    double idle = 0;
    for (int i = 0; i < 300 && idle != 1; ++i) {
        idle = metric(scrape(px.admin_port()), R"(wsdrain_sessions_closed_total{reason="idle",upstream="app"})");
        std::this_thread::sleep_for(10ms);
    }
    EXPECT_EQ(idle, 1);
}
