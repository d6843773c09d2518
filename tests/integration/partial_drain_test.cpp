// Partial drains over real sockets (SPEC section 8, POST /drain?fraction=F&spread=D): a share
// of the sessions, chosen evenly across endpoints, closed with the drain's handshake while the
// proxy goes on serving.
#include <gtest/gtest.h>

#include <algorithm>
#include <functional>
#include <thread>

#include "harness.hpp"

using namespace wsdrain::testing;
using namespace std::chrono_literals;
using clk = std::chrono::steady_clock;

namespace {

http_result post_drain(std::uint16_t admin, const std::string& query) {
    return http_request(admin, bhttp::verb::post, "/drain" + (query.empty() ? "" : "?" + query));
}

std::string status(std::uint16_t admin) {
    return http_request(admin, bhttp::verb::get, "/drain").body;
}

// The "partial_drain" object of a drain status.
std::string partial(const std::string& json) {
    const auto pos = json.find("\"partial_drain\":");
    return pos == std::string::npos ? std::string{} : json.substr(pos + 16);
}

unsigned readyz(std::uint16_t admin) {
    return http_request(admin, bhttp::verb::get, "/readyz").status;
}

int closed(const client_pool& pool) {
    int n = 0;
    for (const auto& r : pool.results())
        n += !r.open();
    return n;
}

}  // namespace

TEST(partial_drain, a_partial_drain_of_25_percent_of_40_sessions_closes_10_and_the_proxy_keeps_serving) {
    backend app{{}};
    auto cfg = local_config({app.port()});
    cfg.drain.close_code = 4000;
    cfg.drain.close_reason = "rebalancing";
    cfg.drain.spread = 1s;
    proxy px{cfg};
    const auto admin = px.admin_port();
    client_pool clients{px.port(), 40};
    ASSERT_TRUE(wait_for([&] { return app.sessions_open() == 40; }));

    const auto started = post_drain(admin, "fraction=0.25&spread=1s");
    ASSERT_EQ(started.status, 202u) << started.body;
    EXPECT_EQ(json_field(started.body, "state"), "serving") << started.body;
    const std::string p = partial(started.body);
    EXPECT_EQ(json_field(p, "state"), "closing") << p;
    EXPECT_EQ(json_field(p, "sessions_at_start"), "40") << p;
    const int chosen = std::stoi(json_field(p, "chosen"));
    EXPECT_NEAR(chosen, 10, 1) << p;

    // While it runs: ready, and new sessions are served.
    EXPECT_EQ(readyz(admin), 200u);
    {
        ws_client during{px.port()};
        during.send_text("during");
        EXPECT_EQ(during.receive(), "during");
        during.close();
    }

    ASSERT_TRUE(wait_for([&] { return json_field(partial(status(admin)), "state") == "done"; }, 5s)) << status(admin);
    ASSERT_TRUE(wait_for([&] { return closed(clients) >= chosen; }, 5s));
    std::this_thread::sleep_for(300ms);  // and no more than that
    EXPECT_EQ(closed(clients), chosen);
    EXPECT_NEAR(closed(clients), 10, 1);
    for (const auto& r : clients.results()) {
        if (r.open()) continue;
        EXPECT_EQ(r.code, 4000) << "drain.close_code";
        EXPECT_EQ(r.reason, "rebalancing") << "drain.close_reason";
    }
    // Each chosen session completed the handshake on both legs: the client's reply reached
    // the backend, and the proxy counts it clean.
    ASSERT_TRUE(wait_for([&] { return app.ended().size() >= static_cast<std::size_t>(chosen) + 1; }));
    int relayed = 0;
    for (const auto& e : app.ended())
        relayed += e.close_frame && e.code == 4000;
    EXPECT_EQ(relayed, chosen);
    const std::string done = partial(status(admin));
    EXPECT_EQ(json_field(done, "asked"), std::to_string(chosen)) << done;
    EXPECT_EQ(json_field(done, "closed_clean"), std::to_string(chosen)) << done;
    EXPECT_EQ(json_field(done, "closed_forced"), "0") << done;
    auto m = scrape(admin);
    EXPECT_EQ(metric(m, R"(wsdrain_sessions_closed_total{reason="drain_clean",upstream="app"})"), chosen);
    EXPECT_EQ(metric(m, R"(wsdrain_sessions_closed_total{reason="drain_forced",upstream="app"})"), 0);
    EXPECT_EQ(metric(m, "wsdrain_state"), 0);

    // The others still echo; the proxy is still ready; a new session works.
    EXPECT_EQ(clients.open(), 40 - chosen);
    EXPECT_TRUE(open_sessions_echo(clients)) << "a session left open stopped relaying";
    EXPECT_EQ(readyz(admin), 200u);
    {
        ws_client after{px.port()};
        after.send_text("after");
        EXPECT_EQ(after.receive(), "after");
        after.close();
    }

    // A full drain afterwards closes the rest as usual (once the proxy has let go of the
    // session above, which would count as a clean close of the drain otherwise).
    ASSERT_TRUE(
        wait_for([&] { return metric(scrape(admin), R"(wsdrain_sessions_active{upstream="app"})") == 40 - chosen; }));
    ASSERT_EQ(post_drain(admin, "").status, 202u);
    ASSERT_TRUE(clients.wait_closed(10s));
    for (const auto& r : clients.results())
        EXPECT_EQ(r.code, 4000);
    ASSERT_TRUE(wait_for([&] { return json_field(status(admin), "state") == "drained"; }));
    EXPECT_EQ(json_field(status(admin), "closed_clean"), std::to_string(40 - chosen));
    EXPECT_EQ(readyz(admin), 503u);
}

TEST(partial_drain, closes_are_paced_over_the_spread_not_sent_at_once) {
    backend app{{}};
    proxy px{local_config({app.port()})};
    client_pool clients{px.port(), 40};
    ASSERT_TRUE(wait_for([&] { return app.sessions_open() == 40; }));
    const auto t0 = clk::now();
    const auto started = post_drain(px.admin_port(), "fraction=0.5&spread=2s");
    ASSERT_EQ(started.status, 202u);
    ASSERT_EQ(json_field(partial(started.body), "chosen"), "20");
    ASSERT_TRUE(wait_for([&] { return closed(clients) == 20; }, 5s));
    std::vector<double> at;
    for (const auto& r : clients.results())
        if (!r.open()) at.push_back(std::chrono::duration<double>(r.closed_at - t0).count());
    ASSERT_EQ(at.size(), 20u);
    std::sort(at.begin(), at.end());
    // Close i of each loop's n is due at 2 s * i / n: quartiles near 0.5, 1 and 1.5 s.
    EXPECT_LT(at.front(), 0.3);
    EXPECT_NEAR(at[5], 0.5, 0.35);
    EXPECT_NEAR(at[10], 1.0, 0.35);
    EXPECT_NEAR(at[15], 1.5, 0.35);
    EXPECT_GT(at.back(), 1.4);
    EXPECT_LT(at.back(), 2.5);
    RecordProperty("close_times_s",
                   std::to_string(at.front()) + " " + std::to_string(at[10]) + " " + std::to_string(at.back()));
}

TEST(partial_drain, each_endpoint_loses_its_own_share_however_old_its_sessions_are) {
    backend a{named("a")}, b{named("b")};
    auto cfg = local_config({a.port()});
    cfg.upstreams.push_back({"other", {{"127.0.0.1", b.port()}}});
    cfg.routes.push_back({"", "/b", "other"});
    proxy px{cfg};
    client_pool on_a{px.port(), 30};  // the oldest sessions all go to endpoint a
    client_pool on_b{px.port(), 10, false, "/b"};
    ASSERT_TRUE(wait_for([&] { return a.sessions_open() == 30 && b.sessions_open() == 10; }));
    const auto started = post_drain(px.admin_port(), "fraction=0.5&spread=500ms");
    ASSERT_EQ(started.status, 202u);
    EXPECT_EQ(json_field(partial(started.body), "chosen"), "20");
    ASSERT_TRUE(wait_for([&] { return closed(on_a) + closed(on_b) == 20; }, 5s));
    std::this_thread::sleep_for(200ms);
    EXPECT_EQ(closed(on_a), 15) << "half of endpoint a's 30";
    EXPECT_EQ(closed(on_b), 5) << "half of endpoint b's 10";
    EXPECT_TRUE(open_sessions_echo(on_a));
    EXPECT_TRUE(open_sessions_echo(on_b));
}

TEST(partial_drain, a_full_drain_during_a_partial_one_takes_over_and_closes_every_session) {
    backend app{{}};
    auto cfg = local_config({app.port()});
    cfg.drain.spread = 1s;
    cfg.drain.timeout = 10s;
    proxy px{cfg};
    client_pool clients{px.port(), 20};
    ASSERT_TRUE(wait_for([&] { return app.sessions_open() == 20; }));
    const auto started = post_drain(px.admin_port(), "fraction=0.5&spread=30s");
    ASSERT_EQ(started.status, 202u);
    EXPECT_EQ(json_field(partial(started.body), "chosen"), "10");
    std::this_thread::sleep_for(500ms);
    EXPECT_GE(clients.open(), 16) << "a 30 s spread has barely begun";

    const auto t1 = clk::now();
    px.server().signal();  // SIGTERM
    ASSERT_TRUE(clients.wait_closed(5s));
    EXPECT_LT(std::chrono::duration<double>(clk::now() - t1).count(), 3.0) << "drain.spread, not the partial 30 s";
    for (const auto& r : clients.results())
        EXPECT_EQ(r.code, 1001);
    ASSERT_TRUE(wait_for([&] { return json_field(status(px.admin_port()), "state") == "drained"; }));
    EXPECT_EQ(json_field(partial(status(px.admin_port())), "state"), "superseded");
    const auto m = scrape(px.admin_port());
    EXPECT_EQ(metric(m, R"(wsdrain_sessions_closed_total{reason="drain_clean",upstream="app"})"), 20);
    EXPECT_EQ(metric(m, R"(wsdrain_sessions_closed_total{reason="drain_forced",upstream="app"})"), 0);
}

TEST(partial_drain, bad_parameters_get_400_saying_why_and_change_nothing) {
    backend app{{}};
    proxy px{local_config({app.port()})};
    client_pool clients{px.port(), 4};
    const std::pair<const char*, const char*> cases[] = {
        {"fraction=0", "fraction must be"},
        {"fraction=1.5", "fraction must be"},
        {"fraction=-0.5", "fraction must be"},
        {"fraction=abc", "fraction must be"},
        {"fraction=", "fraction must be"},
        {"fraction=0.5&spread=soon", "spread must be"},
        {"fraction=0.5&spread=-1s", "spread must be"},
        {"spread=1s", "needs fraction"},
        {"fraction=0.5&force=1", "unknown parameter 'force'"},
        {"fraction=0.5&fraction=0.6", "twice"},
    };
    for (const auto& [query, why] : cases) {
        const auto r = post_drain(px.admin_port(), query);
        EXPECT_EQ(r.status, 400u) << query;
        EXPECT_NE(r.body.find(why), std::string::npos) << query << ": " << r.body;
    }
    std::this_thread::sleep_for(300ms);
    EXPECT_EQ(clients.open(), 4);
    EXPECT_NE(status(px.admin_port()).find("\"partial_drain\":null"), std::string::npos) << status(px.admin_port());
    EXPECT_EQ(readyz(px.admin_port()), 200u);
}

TEST(partial_drain, another_partial_drain_while_one_runs_or_during_a_full_drain_gets_409) {
    backend app{{}};
    proxy px{local_config({app.port()})};
    client_pool clients{px.port(), 10};
    ASSERT_TRUE(wait_for([&] { return app.sessions_open() == 10; }));
    ASSERT_EQ(post_drain(px.admin_port(), "fraction=0.5&spread=10s").status, 202u);
    const auto again = post_drain(px.admin_port(), "fraction=0.2");
    EXPECT_EQ(again.status, 409u);
    EXPECT_NE(again.body.find("under way"), std::string::npos) << again.body;
    ASSERT_EQ(post_drain(px.admin_port(), "").status, 202u);
    const auto during = post_drain(px.admin_port(), "fraction=0.2");
    EXPECT_EQ(during.status, 409u);
    EXPECT_NE(during.body.find("draining"), std::string::npos) << during.body;
}

TEST(partial_drain, the_cli_starts_one_and_waits_for_it) {
    backend app{{}};
    proxy px{local_config({app.port()})};
    client_pool clients{px.port(), 10};
    ASSERT_TRUE(wait_for([&] { return app.sessions_open() == 10; }));
    const std::string admin = "127.0.0.1:" + std::to_string(px.admin_port());
    process cli{binary_path("wsdrain"),
                {"drain", "--fraction", "0.5", "--spread", "500ms", "--wait", "--admin", admin}};
    const std::string out = cli.read_all(10s);
    EXPECT_EQ(cli.wait(5s), 0) << out;
    EXPECT_NE(out.find("partial drain: done, 5 of 10 sessions chosen, 5 asked to close"), std::string::npos) << out;
    EXPECT_TRUE(wait_for([&] { return closed(clients) == 5; }, 3s));
    EXPECT_EQ(readyz(px.admin_port()), 200u);

    process bad{binary_path("wsdrain"), {"drain", "--fraction", "2", "--admin", admin}};
    EXPECT_EQ(bad.wait(5s), 2);
    process lone{binary_path("wsdrain"), {"drain", "--spread", "1s", "--admin", admin}};
    EXPECT_EQ(lone.wait(5s), 2) << "--spread alone is a mistake, not a full drain";
}
