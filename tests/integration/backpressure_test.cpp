// A client that stops reading while its backend floods it: the proxy stops reading the
// backend instead of buffering, so its memory stays flat and the backend is paused.
#include <gtest/gtest.h>

#include <thread>

#include "harness.hpp"

using namespace wsdrain::testing;

TEST(backpressure, a_slow_client_pauses_the_backend_and_the_proxy_memory_stays_bounded) {
    backend app{{}};
    const auto port = free_port(), admin = free_port();
    process px{binary_path("wsdrain"), {"--upstream", "127.0.0.1:" + std::to_string(app.port()), "--listen",
                                        "127.0.0.1:" + std::to_string(port), "--admin",
                                        "127.0.0.1:" + std::to_string(admin), "--log-level", "warn"}};
    for (int i = 0; i < 500; ++i) {
        try {
            if (http_request(admin, bhttp::verb::get, "/readyz").status == 200) break;
        } catch (const std::exception&) {
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    const long rss_before = rss_kib(px.pid());
    raw_client c{port};
    constexpr int messages = 2000;  // 2000 x 64 KiB = 125 MiB the client will not read for now
    c.send_frame(0x1, "flood " + std::to_string(messages));

    // Wait (bounded) until the flood stalls: nothing more leaves the backend for 500 ms.
    std::uint64_t last = 0;
    for (int stable = 0, i = 0; stable < 5 && i < 300; ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
        const std::uint64_t now = app.bytes_flooded();
        stable = now == last && now > 0 ? stable + 1 : 0;
        last = now;
    }
    const std::uint64_t sent = app.bytes_flooded();
    const long rss_during = rss_kib(px.pid());
    EXPECT_LT(sent, 40ull << 20) << "the backend was not paused: it sent " << (sent >> 20) << " MiB";
    EXPECT_LT(rss_during - rss_before, 16 * 1024) << "proxy RSS grew from " << rss_before << " to " << rss_during << " KiB";

    // The client reads again: every message arrives, whole.
    int got = 0;
    while (got < messages) {
        auto f = c.read_frame();
        ASSERT_TRUE(f) << "after " << got << " messages";
        ASSERT_EQ(f->payload.size(), 64u * 1024);
        ++got;
    }
    // The backend counts a message once its write completes, which may be a moment after the
    // client has read it: wait (bounded) for the count rather than read it at once.
    const std::uint64_t total = std::uint64_t{messages} * 64 * 1024;
    EXPECT_TRUE(wait_for([&] { return app.bytes_flooded() == total; }, std::chrono::seconds(10)))
        << "the backend counted " << app.bytes_flooded() << " of " << total << " bytes";
    RecordProperty("backend_mib_sent_while_client_stalled", static_cast<int>(sent >> 20));
    RecordProperty("proxy_rss_growth_kib", static_cast<int>(rss_during - rss_before));
}
