// Backend restarts behind a running wsdrain (SPEC section 8), over real sockets: the drain of
// one upstream or endpoint (Close 1012), held upgrades, active health checks, config reloads
// and reconnect hints. The full scenario with a backend process restarted by the systemd
// recipe is in restart_scenario_test.cpp.
#include <gtest/gtest.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/write.hpp>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <future>
#include <set>
#include <thread>

#include "harness.hpp"

using namespace wsdrain::testing;
using namespace std::chrono_literals;
using clk = std::chrono::steady_clock;
namespace fs = std::filesystem;

namespace {

http_result post(std::uint16_t admin, const std::string& path) { return http_request(admin, bhttp::verb::post, path); }

std::string upstream_status(std::uint16_t admin, const std::string& name) {
    return http_request(admin, bhttp::verb::get, "/upstreams/" + name).body;
}

// The object of `endpoint` in an upstream's status ("" when absent).
std::string endpoint_object(const std::string& json, const std::string& endpoint) {
    const auto pos = json.find("{\"endpoint\":\"" + endpoint + "\"");
    if (pos == std::string::npos) return {};
    return json.substr(pos, json.find('}', pos) - pos + 1);
}

std::string address(std::uint16_t port) { return "127.0.0.1:" + std::to_string(port); }

double held(std::uint16_t admin, const std::string& upstream) {
    return metric(scrape(admin), "wsdrain_upgrades_held{upstream=\"" + upstream + "\"}");
}

std::string up_series(const std::string& upstream, std::uint16_t port) {
    return "wsdrain_upstream_endpoint_up{endpoint=\"" + address(port) + "\",upstream=\"" + upstream + "\"}";
}

}  // namespace

TEST(upstream_drain, sessions_of_a_drained_upstream_get_1012_and_the_other_upstream_keeps_serving) {
    backend a{named("a")}, b{named("b")};
    auto cfg = local_config({a.port()});
    cfg.upstreams[0].name = "a";
    cfg.upstreams[0].hold_timeout = 300ms;
    cfg.upstreams.push_back({"b", {{"127.0.0.1", b.port()}}});
    cfg.routes = {{"", "/a", "a"}, {"", "/b", "b"}};
    cfg.drain.spread = 500ms;
    proxy px{cfg};
    const auto admin = px.admin_port();
    client_pool on_a{px.port(), 10, false, "/a"}, on_b{px.port(), 10, false, "/b"};
    ASSERT_TRUE(wait_for([&] { return a.sessions_open() == 10 && b.sessions_open() == 10; }));

    const auto drained = post(admin, "/upstreams/a/drain");
    EXPECT_EQ(drained.status, 202u) << drained.body;
    EXPECT_NE(drained.body.find("\"drained\":true"), std::string::npos) << drained.body;

    // Every session on a gets Close 1012, and the handshake completes on both legs.
    ASSERT_TRUE(on_a.wait_closed(10s));
    for (const auto& r : on_a.results()) {
        EXPECT_EQ(r.code, 1012);
        EXPECT_EQ(r.reason, "backend restarting");
    }
    ASSERT_TRUE(wait_for([&] { return a.ended().size() == 10; }));
    for (const auto& e : a.ended()) {
        EXPECT_TRUE(e.close_frame);
        EXPECT_EQ(e.code, 1012);
    }
    EXPECT_NE(endpoint_object(upstream_status(admin, "a"), address(a.port())).find("\"sessions\":0"),
              std::string::npos);
    const std::string metrics = scrape(admin);
    EXPECT_EQ(metric(metrics, "wsdrain_sessions_closed_total{reason=\"drain_clean\",upstream=\"a\"}"), 10);
    EXPECT_EQ(metric(metrics, up_series("a", a.port())), 1);  // drained is not down

    // b was not touched.
    EXPECT_EQ(on_b.open(), 10);
    EXPECT_TRUE(open_sessions_echo(on_b));
    ws_client on_b_too{px.port(), "/b"};
    EXPECT_EQ(on_b_too.header("X-Backend"), "b");

    // A new upgrade for a is held for hold_timeout, then refused with Retry-After.
    const auto refused = refused_upgrade(px.port(), "/a");
    EXPECT_EQ(refused.status, 503u);
    EXPECT_TRUE(refused.headers.count("Retry-After"));
    EXPECT_NE(refused.body.find("hold_timeout"), std::string::npos) << refused.body;

    // Undrained, a takes sessions again.
    EXPECT_EQ(post(admin, "/upstreams/a/undrain").status, 202u);
    ws_client again{px.port(), "/a"};
    EXPECT_EQ(again.header("X-Backend"), "a");
    again.send_text("back");
    EXPECT_EQ(again.receive(), "back");
}

TEST(upstream_drain, unknown_upstreams_and_endpoints_are_404_and_an_endpoint_may_be_percent_encoded) {
    backend app{{}};
    proxy px{local_config({app.port()})};
    const auto admin = px.admin_port();
    EXPECT_EQ(post(admin, "/upstreams/nope/drain").status, 404u);
    EXPECT_EQ(post(admin, "/upstreams/app/endpoints/127.0.0.1:1/drain").status, 404u);
    EXPECT_EQ(post(admin, "/upstreams/app/sideways").status, 404u);
    EXPECT_EQ(http_request(admin, bhttp::verb::get, "/upstreams/nope").status, 404u);
    EXPECT_EQ(http_request(admin, bhttp::verb::get, "/upstreams/app/drain").status, 405u);
    EXPECT_EQ(http_request(admin, bhttp::verb::get, "/reload").status, 405u);
    EXPECT_EQ(http_request(admin, bhttp::verb::put, "/upstreams").status, 405u);
    const auto all = http_request(admin, bhttp::verb::get, "/upstreams");
    EXPECT_EQ(all.status, 200u);
    EXPECT_NE(all.body.find("\"name\":\"app\""), std::string::npos) << all.body;
    // An endpoint may be written percent-encoded.
    EXPECT_EQ(post(admin, "/upstreams/app/endpoints/127.0.0.1%3A" + std::to_string(app.port()) + "/drain").status,
              202u);
    EXPECT_NE(endpoint_object(upstream_status(admin, "app"), address(app.port())).find("\"drained\":true"),
              std::string::npos);
}

TEST(held_upgrades, an_upgrade_waits_while_the_upstream_is_drained_and_goes_through_on_undrain) {
    backend app{{}};
    auto cfg = local_config({app.port()});
    cfg.upstreams[0].hold_timeout = 20s;
    proxy px{cfg};
    const auto admin = px.admin_port();
    ASSERT_EQ(post(admin, "/upstreams/app/drain").status, 202u);

    auto upgrade = std::async(std::launch::async, [&] {
        ws_client c{px.port()};
        c.send_text("held, then served");
        return c.receive();
    });
    ASSERT_TRUE(wait_for([&] { return held(admin, "app") == 1; }));
    EXPECT_EQ(upgrade.wait_for(300ms), std::future_status::timeout);  // still waiting
    EXPECT_NE(upstream_status(admin, "app").find("\"held\":1"), std::string::npos);

    EXPECT_EQ(post(admin, "/upstreams/app/undrain").status, 202u);
    EXPECT_EQ(upgrade.get(), "held, then served");
    EXPECT_EQ(held(admin, "app"), 0);
    EXPECT_EQ(metric(scrape(admin), "wsdrain_upgrades_total{result=\"ok\",upstream=\"app\"}"), 1);
}

TEST(held_upgrades, past_hold_max_an_upgrade_is_refused_at_once) {
    backend app{{}};
    auto cfg = local_config({app.port()});
    cfg.upstreams[0].hold_timeout = 20s;
    cfg.upstreams[0].hold_max = 2;
    proxy px{cfg};
    const auto admin = px.admin_port();
    ASSERT_EQ(post(admin, "/upstreams/app/drain").status, 202u);
    std::vector<std::future<std::string>> waiting;
    for (int i = 0; i < 2; ++i)
        waiting.push_back(std::async(std::launch::async, [&] {
            ws_client c{px.port()};
            return c.header("X-Backend");
        }));
    ASSERT_TRUE(wait_for([&] { return held(admin, "app") == 2; }));
    const auto third = refused_upgrade(px.port(), "/");
    EXPECT_EQ(third.status, 503u);
    EXPECT_TRUE(third.headers.count("Retry-After"));
    EXPECT_EQ(held(admin, "app"), 2);  // refused while the other two still wait

    EXPECT_EQ(post(admin, "/upstreams/app/undrain").status, 202u);
    for (auto& w : waiting) EXPECT_EQ(w.get(), "backend");
}

TEST(held_upgrades, a_full_drain_refuses_the_held_upgrades) {
    backend app{{}};
    auto cfg = local_config({app.port()});
    cfg.upstreams[0].hold_timeout = 20s;
    proxy px{cfg};
    const auto admin = px.admin_port();
    ASSERT_EQ(post(admin, "/upstreams/app/drain").status, 202u);
    auto upgrade = std::async(std::launch::async, [&] { return refused_upgrade(px.port(), "/"); });
    ASSERT_TRUE(wait_for([&] { return held(admin, "app") == 1; }));
    EXPECT_EQ(post(admin, "/drain").status, 202u);
    const auto r = upgrade.get();
    EXPECT_EQ(r.status, 503u);
    EXPECT_NE(r.body.find("draining"), std::string::npos) << r.body;
}

TEST(rolling_restart, two_endpoints_restarted_one_at_a_time_clients_never_see_an_error) {
    auto e1 = std::make_unique<backend>(named("e1"));
    auto e2 = std::make_unique<backend>(named("e2"));
    const std::uint16_t p1 = e1->port(), p2 = e2->port();
    auto cfg = local_config({p1, p2});
    cfg.upstreams[0].hold_timeout = 20s;
    cfg.upstreams[0].health_check = wsdrain::config::health_check_config{};
    cfg.upstreams[0].health_check->interval = 100ms;
    cfg.upstreams[0].health_check->timeout = 100ms;
    cfg.upstreams[0].health_check->unhealthy_threshold = 1;
    cfg.drain.spread = 300ms;
    proxy px{cfg};
    const auto admin = px.admin_port();
    client_pool early{px.port(), 20};
    ASSERT_TRUE(wait_for([&] { return e1->sessions_open() == 10 && e2->sessions_open() == 10; }));

    // New clients all along, one every 50 ms: each must be served (echo) by someone.
    std::atomic<bool> stop{false};
    std::atomic<const char*> phase{"both"};
    struct arrival {
        std::string phase, served_by, error;
    };
    std::mutex m;
    std::vector<arrival> arrivals;
    std::thread newcomers([&] {
        while (!stop) {
            arrival a{phase.load(), {}, {}};
            try {
                ws_client c{px.port()};
                a.served_by = c.header("X-Backend");
                c.send_text("hi");
                if (c.receive() != "hi") a.error = "wrong echo";
                c.close();
            } catch (const std::exception& ex) {
                a.error = ex.what();
            }
            {
                std::lock_guard lock(m);
                arrivals.push_back(a);
            }
            std::this_thread::sleep_for(50ms);
        }
    });

    auto restart = [&](std::unique_ptr<backend>& e, std::uint16_t port, const char* name, const char* drained_phase) {
        const std::string ep = address(port);
        ASSERT_EQ(post(admin, "/upstreams/app/endpoints/" + ep + "/drain").status, 202u);
        phase = drained_phase;
        ASSERT_TRUE(wait_for([&] {
            return endpoint_object(upstream_status(admin, "app"), ep).find("\"sessions\":0") != std::string::npos;
        }));
        e.reset();  // stopped
        std::this_thread::sleep_for(300ms);
        // From here on the endpoint may take sessions again: its health check sees it back
        // (which ends its drain) or the undrain below does.
        phase = "both";
        backend_options o = named(name);
        o.port = port;
        e = std::make_unique<backend>(o);  // started again on the same port
        ASSERT_EQ(post(admin, "/upstreams/app/endpoints/" + ep + "/undrain").status, 202u);
        ASSERT_TRUE(wait_for([&] {
            return endpoint_object(upstream_status(admin, "app"), ep).find("\"up\":true") != std::string::npos;
        }));
        std::this_thread::sleep_for(300ms);
    };
    restart(e1, p1, "e1", "e1 drained");
    restart(e2, p2, "e2", "e2 drained");
    stop = true;
    newcomers.join();

    // The early sessions were closed with 1012, each cleanly, ten per endpoint drain.
    ASSERT_TRUE(early.wait_closed(5s));
    for (const auto& r : early.results()) EXPECT_EQ(r.code, 1012);
    // Newcomers: no error, and none landed on the endpoint being restarted.
    std::lock_guard lock(m);
    ASSERT_GT(arrivals.size(), 10u);
    std::set<std::string> during_e1, during_e2;
    for (const auto& a : arrivals) {
        EXPECT_EQ(a.error, "") << "during " << a.phase;
        if (a.phase == std::string("e1 drained")) during_e1.insert(a.served_by);
        if (a.phase == std::string("e2 drained")) during_e2.insert(a.served_by);
    }
    EXPECT_EQ(during_e1, std::set<std::string>({"e2"}));
    EXPECT_EQ(during_e2, std::set<std::string>({"e1"}));
}

TEST(health_checks, a_tcp_check_marks_an_endpoint_down_and_up_again_within_its_thresholds) {
    auto b = std::make_unique<backend>(named("b"));
    const std::uint16_t port = b->port();
    auto cfg = local_config({port});
    cfg.upstreams[0].hold_timeout = 0ms;  // no holding here: an upgrade while down gets 503 at once
    cfg.upstreams[0].health_check = wsdrain::config::health_check_config{};
    auto& check = *cfg.upstreams[0].health_check;
    check.interval = 100ms;
    check.timeout = 100ms;
    check.unhealthy_threshold = 3;
    check.healthy_threshold = 2;
    proxy px{cfg};
    const auto admin = px.admin_port();
    const std::string series = up_series("app", port);
    EXPECT_EQ(metric(scrape(admin), series), 1);

    b.reset();
    const auto stopped = clk::now();
    ASSERT_TRUE(wait_for([&] { return metric(scrape(admin), series) == 0; }));
    // Three failed checks, one interval apart: at least two intervals after the first.
    EXPECT_GE(clk::now() - stopped, 2 * check.interval);
    EXPECT_EQ(refused_upgrade(px.port(), "/").status, 503u);

    backend_options o = named("b");
    o.port = port;
    b = std::make_unique<backend>(o);
    const auto started = clk::now();
    ASSERT_TRUE(wait_for([&] { return metric(scrape(admin), series) == 1; }));
    EXPECT_GE(clk::now() - started, check.interval);  // two passes in a row
    ws_client c{px.port()};
    EXPECT_EQ(c.header("X-Backend"), "b");
}

TEST(health_checks, an_http_check_wants_a_2xx_and_a_held_upgrade_goes_through_once_it_passes) {
    temp_dir dir;
    const fs::path status_file = dir.path / "status";
    std::ofstream(status_file) << "503";
    // A real HTTP peer whose /healthz answers what the file says; WebSockets go to `app`.
    backend app{named("app")};
    const std::uint16_t health_port = free_port();
    process health{"/usr/bin/python3",
                   {"-c",
                    "import http.server, sys\n"
                    "class H(http.server.BaseHTTPRequestHandler):\n"
                    "    def do_GET(self):\n"
                    "        code = int(open(sys.argv[2]).read()) if self.path == '/healthz' else 404\n"
                    "        self.send_response(code); self.send_header('Content-Length', '0'); self.end_headers()\n"
                    "    def log_message(self, *a): pass\n"
                    "s = http.server.HTTPServer(('127.0.0.1', int(sys.argv[1])), H)\n"
                    "print('ready', flush=True)\n"
                    "s.serve_forever()\n",
                    std::to_string(health_port), status_file.string()}};
    ASSERT_EQ(health.read_line(), "ready");

    // Two upstreams: `checked` is the python peer, checked over http; routed at /checked.
    auto cfg = local_config({app.port()});
    cfg.upstreams.push_back({"checked", {{"127.0.0.1", health_port}}});
    auto& u = cfg.upstreams.back();
    u.hold_timeout = 20s;
    u.health_check = wsdrain::config::health_check_config{};
    u.health_check->type = wsdrain::config::health_check_type::http;
    u.health_check->interval = 100ms;
    u.health_check->timeout = 100ms;
    u.health_check->unhealthy_threshold = 1;
    cfg.routes.push_back({"", "/checked", "checked"});
    proxy px{cfg};
    const auto admin = px.admin_port();
    const std::string series = up_series("checked", health_port);
    ASSERT_TRUE(wait_for([&] { return metric(scrape(admin), series) == 0; }));  // 503: down

    // An upgrade for it waits; the peer is no WebSocket server, so the backend's answer (404)
    // is what the client gets once the check passes and the upgrade is let through.
    auto upgrade = std::async(std::launch::async, [&] { return refused_upgrade(px.port(), "/checked"); });
    ASSERT_TRUE(wait_for([&] { return held(admin, "checked") == 1; }));
    std::ofstream(status_file) << "200";
    ASSERT_TRUE(wait_for([&] { return metric(scrape(admin), series) == 1; }));
    EXPECT_EQ(upgrade.get().status, 404u);
    EXPECT_EQ(held(admin, "checked"), 0);
    health.kill(SIGTERM);
}

TEST(reconnect_hint, each_drain_close_carries_its_own_retry_after_within_the_range) {
    backend app{{}};
    auto cfg = local_config({app.port()});
    cfg.drain.spread = 200ms;
    cfg.drain.reconnect_hint = wsdrain::config::reconnect_hint_config{2000ms, 3000ms};
    proxy px{cfg};
    client_pool clients{px.port(), 20};
    ASSERT_TRUE(wait_for([&] { return app.sessions_open() == 20; }));
    ASSERT_EQ(post(px.admin_port(), "/drain?fraction=1").status, 202u);
    ASSERT_TRUE(clients.wait_closed(10s));
    std::set<long> hints;
    for (const auto& r : clients.results()) {
        EXPECT_EQ(r.code, 1001);
        const std::string prefix = "server draining; retry_after_ms=";
        ASSERT_EQ(r.reason.rfind(prefix, 0), 0u) << r.reason;
        const long ms = std::stol(r.reason.substr(prefix.size()));
        EXPECT_GE(ms, 2000);
        EXPECT_LE(ms, 3000);
        hints.insert(ms);
    }
    EXPECT_GT(hints.size(), 10u);  // drawn per session: 20 draws from 1001 values
}

TEST(held_upgrades, a_reload_that_gives_the_upstream_a_live_endpoint_releases_them_there) {
    backend app{named("moved")};
    auto cfg = local_config({free_port()});  // nothing listens there
    cfg.upstreams[0].hold_timeout = 20s;
    cfg.upstreams[0].health_check = wsdrain::config::health_check_config{};
    cfg.upstreams[0].health_check->interval = 100ms;
    cfg.upstreams[0].health_check->timeout = 100ms;
    cfg.upstreams[0].health_check->unhealthy_threshold = 1;
    proxy px{cfg};
    const auto admin = px.admin_port();
    ASSERT_TRUE(wait_for([&] { return upstream_status(admin, "app").find("\"up\":false") != std::string::npos; }));

    auto upgrade = std::async(std::launch::async, [&] {
        ws_client c{px.port()};
        return c.header("X-Backend");
    });
    ASSERT_TRUE(wait_for([&] { return held(admin, "app") == 1; }));
    auto moved = cfg;
    moved.upstreams[0].endpoints = {{"127.0.0.1", app.port()}};
    px.server().set_config_source([moved] { return wsdrain::app::config_source_result{moved, {}}; });
    EXPECT_EQ(post(admin, "/reload").status, 200u);
    ASSERT_EQ(upgrade.wait_for(10s), std::future_status::ready);
    EXPECT_EQ(upgrade.get(), "moved");
}

TEST(held_upgrades, a_client_that_leaves_while_held_gives_up_its_place_at_once) {
    backend app{{}};
    auto cfg = local_config({app.port()});
    cfg.upstreams[0].hold_timeout = 30s;
    cfg.limits.max_sessions_per_client = 1;
    proxy px{cfg};
    const auto admin = px.admin_port();
    ASSERT_EQ(post(admin, "/upstreams/app/drain").status, 202u);
    {
        asio::io_context ctx;
        tcp::socket s{ctx};
        s.connect({asio::ip::make_address("127.0.0.1"), px.port()});
        asio::write(s, asio::buffer(std::string_view(
                           "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                           "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")));
        ASSERT_TRUE(wait_for([&] { return held(admin, "app") == 1; }));
    }  // the client closes its socket
    ASSERT_TRUE(wait_for([&] { return held(admin, "app") == 0; }, 5s));  // not 30 s later
    // Its place (the only one this client may have) is free again.
    EXPECT_EQ(post(admin, "/upstreams/app/undrain").status, 202u);
    ws_client c{px.port()};
    c.send_text("my turn");
    EXPECT_EQ(c.receive(), "my turn");
}
