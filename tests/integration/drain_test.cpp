// The graceful drain over real sockets with real peers (SPEC section 2).
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <future>
#include <thread>

#include <boost/asio/write.hpp>

#include "harness.hpp"

using namespace wsdrain::testing;
using namespace std::chrono_literals;
using clk = std::chrono::steady_clock;

namespace {

std::string write_config(const std::string& name, std::uint16_t listen, std::uint16_t admin, std::uint16_t backend,
                         const std::string& drain) {
    const auto path = std::filesystem::temp_directory_path() / ("wsdrain-drain-" + std::to_string(::getpid()) + "-" + name);
    std::ofstream(path) << "listen: 127.0.0.1:" << listen << "\nthreads: 2\nadmin: {listen: 127.0.0.1:" << admin
                        << "}\nupstreams: [{name: app, endpoints: [127.0.0.1:" << backend
                        << "]}]\nroutes: [{path_prefix: /, upstream: app}]\ndrain:\n"
                        << drain << "log: {level: warn}\n";
    return path.string();
}

bool ready(std::uint16_t admin) {
    try {
        return http_request(admin, bhttp::verb::get, "/readyz").status == 200;
    } catch (const std::exception&) {
        return false;
    }
}

http_result upgrade_request(std::uint16_t port) {
    return http_request(port, bhttp::verb::get, "/", {},
                        {{"Upgrade", "websocket"}, {"Connection", "Upgrade"}, {"Sec-WebSocket-Version", "13"},
                         {"Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="}});
}


}  // namespace

TEST(drain, sigterm_with_100_sessions_closes_each_with_a_clean_handshake_and_exits_0) {
    backend app{{}};
    const auto port = free_port(), admin = free_port();
    const auto file = write_config("sigterm.yaml", port, admin, app.port(),
                                   "  pre_delay: 500ms\n  spread: 2s\n  close_timeout: 2s\n  timeout: 10s\n"
                                   "  close_reason: see you soon\n");
    process px{binary_path("wsdrain"), {"--config", file}};
    ASSERT_TRUE(wait_for([&] { return ready(admin); }));
    client_pool clients{port, 100};
    ASSERT_TRUE(wait_for([&] { return app.sessions_open() == 100; }));

    const auto t0 = clk::now();
    px.kill(SIGTERM);
    EXPECT_TRUE(wait_for([&] { return !ready(admin); }, 300ms)) << "/readyz must turn 503 at once";
    // During the pre-delay new sessions still go through.
    EXPECT_EQ(upgrade_request(port).status, 101u);
    std::this_thread::sleep_for(700ms);
    auto refused = upgrade_request(port);
    EXPECT_EQ(refused.status, 503u);
    EXPECT_FALSE(refused.headers["Retry-After"].empty());
    EXPECT_EQ(refused.headers["Connection"], "close");

    ASSERT_TRUE(clients.wait_closed(10s));
    const auto status = px.wait(10s);
    const double took = std::chrono::duration<double>(clk::now() - t0).count();
    ASSERT_TRUE(status) << "the process did not exit";
    EXPECT_EQ(*status, 0);
    EXPECT_LT(took, 0.5 + 2 + 2 + 1.5) << "pre_delay + spread + close_timeout + margin";
    for (const auto& r : clients.results()) {
        EXPECT_EQ(r.code, 1001);
        EXPECT_EQ(r.reason, "see you soon");
    }
    ASSERT_TRUE(wait_for([&] { return app.ended().size() >= 101; }));
    int ids = 0;
    for (const auto& e : app.ended()) {
        EXPECT_TRUE(e.close_frame) << "the backend saw a session end without a Close";
        EXPECT_EQ(e.code, 1001);
        ids += e.first_message.starts_with("ID ");
    }
    EXPECT_EQ(ids, 100);
    std::filesystem::remove(file);
}

TEST(drain, closes_are_spread_evenly_over_the_window) {
    backend app{{}};
    auto cfg = local_config({app.port()});
    cfg.drain.spread = 3s;
    cfg.drain.timeout = 15s;
    proxy px{cfg};
    client_pool clients{px.port(), 60};
    const auto t0 = clk::now();
    px.server().signal();
    ASSERT_TRUE(clients.wait_closed(10s));
    std::vector<double> at;
    for (const auto& r : clients.results()) {
        EXPECT_EQ(r.code, 1001);
        at.push_back(std::chrono::duration<double>(r.closed_at - t0).count());
    }
    std::sort(at.begin(), at.end());
    // Even spread: quartiles near 0.75 s, 1.5 s and 2.25 s; no burst at the start or end.
    EXPECT_NEAR(at[15], 0.75, 0.35);
    EXPECT_NEAR(at[30], 1.5, 0.35);
    EXPECT_NEAR(at[45], 2.25, 0.35);
    EXPECT_LT(at.back(), 3.5);
    RecordProperty("close_quartiles_s", std::to_string(at[15]) + " " + std::to_string(at[30]) + " " + std::to_string(at[45]));
}

TEST(drain, nothing_a_client_sent_before_its_close_reply_is_lost) {
    backend app{{}};
    auto cfg = local_config({app.port()});
    cfg.drain.spread = 1500ms;
    proxy px{cfg};
    client_pool clients{px.port(), 20, true};  // each streams SEQ 1, 2, 3... at full speed
    std::this_thread::sleep_for(300ms);
    px.server().signal();
    ASSERT_TRUE(clients.wait_closed(10s));
    ASSERT_TRUE(wait_for([&] { return app.ended().size() == 20; }));
    std::map<std::string, std::uint64_t> received;
    for (const auto& e : app.ended()) {
        EXPECT_TRUE(e.close_frame);
        received[e.first_message] = e.last_sequence;
    }
    const auto results = clients.results();
    for (std::size_t i = 0; i < results.size(); ++i) {
        EXPECT_EQ(results[i].code, 1001);
        EXPECT_GT(results[i].last_sequence_sent, 0u);
        EXPECT_GE(received["ID " + std::to_string(i)], results[i].last_sequence_sent)
            << "client " << i << " sent up to " << results[i].last_sequence_sent;
    }
}

TEST(drain, a_client_that_never_answers_is_forced_after_close_timeout_and_the_drain_still_ends_in_time) {
    backend app{{}};
    auto cfg = local_config({app.port()});
    cfg.drain.spread = 200ms;
    cfg.drain.close_timeout = 1s;
    cfg.drain.timeout = 5s;
    proxy px{cfg};
    client_pool good{px.port(), 3};
    raw_client silent{px.port()};  // reads nothing, answers nothing
    const auto t0 = clk::now();
    px.server().signal();
    ASSERT_TRUE(good.wait_closed(5s));
    std::string status;
    ASSERT_TRUE(wait_for([&] {
        status = http_request(px.admin_port(), bhttp::verb::get, "/drain").body;
        return json_field(status, "state") == "drained";
    }, 6s)) << status;
    const double took = std::chrono::duration<double>(clk::now() - t0).count();
    EXPECT_GT(took, 0.9) << "the silent client had close_timeout to answer";
    EXPECT_LT(took, 4.0) << "and the drain ended well before drain.timeout";
    EXPECT_EQ(json_field(status, "closed_forced"), "1") << status;
    EXPECT_EQ(json_field(status, "closed_clean"), "3") << status;
    const auto m = scrape(px.admin_port());
    EXPECT_EQ(metric(m, R"(wsdrain_sessions_closed_total{reason="drain_forced",upstream="app"})"), 1);
    EXPECT_EQ(metric(m, R"(wsdrain_sessions_closed_total{reason="drain_clean",upstream="app"})"), 3);
    // The silent client was still sent its Close first.
    auto f = silent.read_frame();
    ASSERT_TRUE(f);
    EXPECT_EQ(f->opcode, 0x8);
    EXPECT_EQ(f->close_code(), 1001);
}

TEST(drain, a_second_sigterm_forces_everything_closed_at_once) {
    backend app{{}};
    const auto port = free_port(), admin = free_port();
    const auto file = write_config("second.yaml", port, admin, app.port(), "  spread: 30s\n  timeout: 60s\n");
    process px{binary_path("wsdrain"), {"--config", file}};
    ASSERT_TRUE(wait_for([&] { return ready(admin); }));
    client_pool clients{port, 20};
    px.kill(SIGTERM);
    std::this_thread::sleep_for(500ms);
    EXPECT_GT(clients.open(), 10) << "a 30 s spread has barely begun";
    const auto t1 = clk::now();
    px.kill(SIGTERM);
    const auto status = px.wait(5s);
    ASSERT_TRUE(status);
    EXPECT_EQ(*status, 0);
    EXPECT_LT(std::chrono::duration<double>(clk::now() - t1).count(), 3.0);
    ASSERT_TRUE(clients.wait_closed(5s));
    for (const auto& r : clients.results()) EXPECT_EQ(r.code, 1001) << "a Close frame even when forced";
    std::filesystem::remove(file);
}

TEST(drain, a_kubernetes_termination_replayed_as_the_kubelet_does_it) {
    backend app{{}};
    const auto port = free_port(), admin = free_port();
    const auto file = write_config("k8s.yaml", port, admin, app.port(),
                                   "  pre_delay: 300ms\n  spread: 2s\n  close_timeout: 2s\n  timeout: 8s\n");
    process px{binary_path("wsdrain"), {"--config", file}};
    ASSERT_TRUE(wait_for([&] { return ready(admin); }));
    client_pool clients{port, 30};
    const auto grace = 15s;  // terminationGracePeriodSeconds
    const auto t0 = clk::now();

    // The backend container's preStop: GET /drain/wait, at the same time as wsdrain's own hook.
    auto backend_hook = std::async(std::launch::async, [&] {
        return http_request(admin, bhttp::verb::get, "/drain/wait?timeout=30");
    });
    process hook{binary_path("wsdrain"), {"drain", "--wait", "--admin", "127.0.0.1:" + std::to_string(admin)}};
    const std::string hook_out = hook.read_all(grace);
    const auto hook_status = hook.wait(1s);
    ASSERT_TRUE(hook_status);
    EXPECT_EQ(*hook_status, 0) << hook_out;
    EXPECT_NE(hook_out.find("drained: 100%"), std::string::npos) << hook_out;

    const auto waited = backend_hook.get();
    EXPECT_EQ(waited.status, 200u);
    EXPECT_EQ(json_field(waited.body, "state"), "drained");
    EXPECT_EQ(json_field(waited.body, "sessions_active"), "0");

    px.kill(SIGTERM);  // after the hook, the kubelet sends SIGTERM
    const auto status = px.wait(grace - std::chrono::duration_cast<std::chrono::milliseconds>(clk::now() - t0));
    ASSERT_TRUE(status) << "still running at the end of the grace period (SIGKILL would follow)";
    EXPECT_EQ(*status, 0);
    ASSERT_TRUE(clients.wait_closed(1s));
    for (const auto& r : clients.results()) EXPECT_EQ(r.code, 1001) << "no client may see 1006";
    std::filesystem::remove(file);
}

TEST(drain, metrics_move_from_serving_to_drained) {
    backend app{{}};
    auto cfg = local_config({app.port()});
    cfg.drain.spread = 1s;
    proxy px{cfg};
    client_pool clients{px.port(), 10};
    auto m = scrape(px.admin_port());
    EXPECT_EQ(metric(m, "wsdrain_state"), 0);
    EXPECT_EQ(metric(m, "wsdrain_drain_progress_ratio"), 0);
    EXPECT_EQ(json_field(http_request(px.admin_port(), bhttp::verb::get, "/drain").body, "started_at"), "null");

    // An admin drain: the proxy stays up, drained, so it can be scraped afterwards.
    auto started = http_request(px.admin_port(), bhttp::verb::post, "/drain");
    EXPECT_EQ(started.status, 202u);
    EXPECT_EQ(json_field(started.body, "state"), "draining");
    EXPECT_EQ(http_request(px.admin_port(), bhttp::verb::post, "/drain").status, 202u) << "again: nothing changes";
    m = scrape(px.admin_port());
    EXPECT_EQ(metric(m, "wsdrain_state"), 1);
    EXPECT_EQ(metric(m, "wsdrain_drain_sessions_at_start"), 10);
    EXPECT_GT(metric(m, "wsdrain_drain_started_timestamp_seconds"), 1.7e9);

    double last_progress = 0, last_remaining = 10;
    while (!clients.wait_closed(100ms)) {
        m = scrape(px.admin_port());
        EXPECT_GE(metric(m, "wsdrain_drain_progress_ratio"), last_progress);
        EXPECT_LE(metric(m, "wsdrain_drain_sessions_remaining"), last_remaining);
        last_progress = metric(m, "wsdrain_drain_progress_ratio");
        last_remaining = metric(m, "wsdrain_drain_sessions_remaining");
    }
    ASSERT_TRUE(wait_for([&] { return metric(scrape(px.admin_port()), "wsdrain_state") == 2; }));
    m = scrape(px.admin_port());
    EXPECT_EQ(metric(m, "wsdrain_drain_sessions_remaining"), 0);
    EXPECT_EQ(metric(m, "wsdrain_drain_progress_ratio"), 1);
    EXPECT_EQ(metric(m, R"(wsdrain_sessions_closed_total{reason="drain_clean",upstream="app"})"), 10);
    EXPECT_GT(metric(m, "wsdrain_drain_duration_seconds"), 0.5);
    EXPECT_GT(metric(m, "wsdrain_close_handshake_seconds_count"), 9);
    EXPECT_EQ(http_request(px.admin_port(), bhttp::verb::get, "/readyz").status, 503u);
    EXPECT_EQ(http_request(px.port(), bhttp::verb::get, "/").status, 503u) << "drained: traffic refused";
    EXPECT_EQ(http_request(px.admin_port(), bhttp::verb::get, "/drain/wait?timeout=1").status, 200u);
}

TEST(drain, plain_requests_in_flight_finish_with_connection_close_and_idle_keep_alive_connections_close) {
    backend app{{}};
    auto cfg = local_config({app.port()});
    cfg.drain.spread = 500ms;
    proxy px{cfg};
    // An idle keep-alive connection.
    asio::io_context ctx;
    tcp::socket idle(ctx);
    idle.connect({asio::ip::make_address("127.0.0.1"), px.port()});
    {
        bhttp::request<bhttp::empty_body> req{bhttp::verb::get, "/first", 11};
        req.set(bhttp::field::host, "x");
        bhttp::write(idle, req);
        beast::flat_buffer buf;
        bhttp::response<bhttp::string_body> res;
        bhttp::read(idle, buf, res);
        EXPECT_TRUE(res.keep_alive());
    }
    px.server().signal();
    ASSERT_TRUE(wait_for([&] {
        return json_field(http_request(px.admin_port(), bhttp::verb::get, "/drain").body, "state") == "drained";
    }));
    char c;
    beast::error_code ec;
    idle.read_some(asio::buffer(&c, 1), ec);
    EXPECT_EQ(ec, asio::error::eof) << "the idle keep-alive connection was closed and did not hold the drain";
}

TEST(drain, post_drain_needs_a_loopback_peer_or_the_token) {
    EXPECT_TRUE(wsdrain::admin::authorized(asio::ip::make_address("127.0.0.1"), "", ""));
    EXPECT_TRUE(wsdrain::admin::authorized(asio::ip::make_address("::1"), "", ""));
    EXPECT_TRUE(wsdrain::admin::authorized(asio::ip::make_address("::ffff:127.0.0.1"), "", ""));
    EXPECT_FALSE(wsdrain::admin::authorized(asio::ip::make_address("10.1.2.3"), "", ""));
    EXPECT_FALSE(wsdrain::admin::authorized(asio::ip::make_address("10.1.2.3"), "Bearer s3cret", ""));
    EXPECT_TRUE(wsdrain::admin::authorized(asio::ip::make_address("10.1.2.3"), "Bearer s3cret", "s3cret"));
    EXPECT_FALSE(wsdrain::admin::authorized(asio::ip::make_address("10.1.2.3"), "Bearer s3cre", "s3cret"));
    EXPECT_FALSE(wsdrain::admin::authorized(asio::ip::make_address("10.1.2.3"), "Bearer s3cretX", "s3cret"));
}

TEST(drain, the_cli_reports_a_drain_it_cannot_reach_as_a_failure) {
    process hook{binary_path("wsdrain"), {"drain", "--wait", "--admin", "127.0.0.1:" + std::to_string(free_port())}};
    EXPECT_EQ(hook.wait(10s), 1);
    process status{binary_path("wsdrain"), {"status", "--admin", "http://127.0.0.1:" + std::to_string(free_port())}};
    EXPECT_EQ(status.wait(10s), 1);
}

TEST(drain, a_plain_request_in_flight_finishes_with_connection_close_and_holds_the_drain) {
    backend app{{}};
    auto cfg = local_config({app.port()});
    cfg.drain.spread = 100ms;
    proxy px{cfg};
    asio::io_context ctx;
    tcp::socket s(ctx);
    s.connect({asio::ip::make_address("127.0.0.1"), px.port()});
    const std::string body(100000, 'p');
    const std::string head = "POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n";
    asio::write(s, asio::buffer(head + body.substr(0, 50000)));  // half the body: in flight
    ASSERT_TRUE(wait_for([&] {
        return metric(scrape(px.admin_port()), "wsdrain_http_requests_in_flight") == 1;
    }));
    px.server().signal();
    std::this_thread::sleep_for(400ms);
    EXPECT_EQ(json_field(http_request(px.admin_port(), bhttp::verb::get, "/drain").body, "state"), "draining")
        << "the request in flight holds the drain";
    asio::write(s, asio::buffer(body.substr(50000)));
    beast::flat_buffer buf;
    bhttp::response<bhttp::string_body> res;
    bhttp::read(s, buf, res);
    EXPECT_EQ(res.result_int(), 200u);
    EXPECT_EQ(res.body().substr(0, 7), "100000 ");
    EXPECT_FALSE(res.keep_alive()) << "Connection: close once the drain refuses new requests";
    EXPECT_TRUE(wait_for([&] {
        return json_field(http_request(px.admin_port(), bhttp::verb::get, "/drain").body, "state") == "drained";
    }));
}

TEST(drain, frames_the_backend_sends_after_the_clients_close_are_dropped_and_counted) {
    backend app{{}};
    auto cfg = local_config({app.port()});
    cfg.drain.spread = 0ms;
    proxy px{cfg};
    raw_client c{px.port()};
    c.send_frame(0x1, "flood 2000");  // 2000 x 64 KiB; the client reads slowly, so the flood is held
    auto first = c.read_frame();
    ASSERT_TRUE(first);
    px.server().signal();
    std::this_thread::sleep_for(300ms);  // not reading: backpressure holds the backend mid-flood
    std::optional<raw_frame> f;
    int data = 0;
    while ((f = c.read_frame()) && f->opcode != 0x8) ++data;
    ASSERT_TRUE(f) << "no Close after " << data << " frames";
    EXPECT_EQ(f->close_code(), 1001);
    EXPECT_LT(data, 1999) << "the flood was cut at the Close";
    c.send_frame(0x8, f->payload.substr(0, 2));
    EXPECT_TRUE(c.at_eof());
    EXPECT_GT(metric(scrape(px.admin_port()), R"(wsdrain_frames_dropped_total{direction="to_client",reason="after_close"})"), 0);
}

TEST(drain, a_session_whose_upgrade_completes_during_the_drain_is_closed_at_once) {
    // A backend that answers the upgrade only when the test says so.
    asio::io_context ctx;
    tcp::acceptor slow(ctx, {asio::ip::make_address("127.0.0.1"), 0});
    auto cfg = local_config({slow.local_endpoint().port()});
    cfg.drain.spread = 0ms;
    cfg.drain.timeout = 20s;
    cfg.upstreams.push_back({"dead", {{"127.0.0.1", free_port()}}});
    cfg.routes.push_back({"", "/other", "dead"});  // 502 while serving, 503 once refusing
    proxy px{cfg};
    auto client = std::async(std::launch::async, [&] { return std::make_unique<raw_client>(px.port()); });
    tcp::socket upstream(ctx);
    slow.accept(upstream);
    std::string request;
    char c;
    while (request.find("\r\n\r\n") == std::string::npos && upstream.read_some(asio::buffer(&c, 1)) == 1) request += c;

    px.server().signal();  // the drain begins while the upgrade is under way
    ASSERT_TRUE(wait_for([&] { return http_request(px.port(), bhttp::verb::get, "/other").status == 503; }, 2s))
        << "the drain never began refusing";
    EXPECT_EQ(json_field(http_request(px.admin_port(), bhttp::verb::get, "/drain").body, "sessions_active"), "1")
        << "the upgrade under way counts as a session";
    const auto t0 = clk::now();
    asio::write(upstream, asio::buffer(std::string("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                                                   "Connection: Upgrade\r\n"
                                                   "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n")));
    auto session = client.get();
    auto f = session->read_frame();
    ASSERT_TRUE(f);
    EXPECT_EQ(f->opcode, 0x8);
    EXPECT_EQ(f->close_code(), 1001);
    EXPECT_LT(std::chrono::duration<double>(clk::now() - t0).count(), 2.0) << "not left until drain.timeout";
}
