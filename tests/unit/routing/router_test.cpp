#include "routing/router.hpp"

#include <gtest/gtest.h>

using namespace wsdrain;

namespace {
config::proxy_config two_upstreams() {
    config::proxy_config cfg;
    cfg.upstreams = {{"web", {{"127.0.0.1", 1}}}, {"api", {{"127.0.0.1", 2}, {"127.0.0.1", 3}}}};
    cfg.routes = {{"", "/", "web"}, {"", "/api", "api"}, {"", "/api/static", "web"}, {"Admin.example.com", "/", "api"}};
    return cfg;
}
}  // namespace

TEST(router, the_longest_matching_prefix_wins) {
    routing::router r{two_upstreams()};
    EXPECT_EQ(r.match("x", "/")->name(), "web");
    EXPECT_EQ(r.match("x", "/apiary")->name(), "api");  // plain string prefix, as SPEC says
    EXPECT_EQ(r.match("x", "/api/v1")->name(), "api");
    EXPECT_EQ(r.match("x", "/api/static/a.js")->name(), "web");
}

TEST(router, host_routes_ignore_port_and_case_and_come_first) {
    routing::router r{two_upstreams()};
    EXPECT_EQ(r.match("ADMIN.example.com:8443", "/")->name(), "api");
    EXPECT_EQ(r.match("other.example.com", "/")->name(), "web");
}

TEST(router, nothing_matches_without_a_catch_all) {
    config::proxy_config cfg = two_upstreams();
    cfg.routes = {{"", "/chat", "web"}};
    routing::router r{cfg};
    EXPECT_EQ(r.match("x", "/other"), nullptr);
    EXPECT_NE(r.match("x", "/chat"), nullptr);
}

TEST(router, normalizes_hosts) {
    EXPECT_EQ(routing::normalize_host("Example.COM:80"), "example.com");
    EXPECT_EQ(routing::normalize_host("[::1]:8080"), "::1");
    EXPECT_EQ(routing::normalize_host("::1"), "::1");
}

// The endpoint `pick` chose, nullptr for none.
const routing::endpoint* picked(const routing::upstream& u, routing::clock::time_point now) {
    const auto* e = u.pick(now);
    return e ? e->get() : nullptr;
}

TEST(endpoint_choice, picks_the_endpoint_with_the_fewest_sessions) {
    routing::router r{two_upstreams()};
    auto& api = *r.upstreams()[1];
    const auto now = routing::clock::now();
    api.endpoints()[0]->session_opened();
    EXPECT_EQ(picked(api, now), api.endpoints()[1].get());
    api.endpoints()[1]->session_opened();
    api.endpoints()[1]->session_opened();
    EXPECT_EQ(picked(api, now), api.endpoints()[0].get());
}

TEST(endpoint_choice, an_endpoint_is_down_after_three_failures_and_offered_again_after_the_back_off) {
    routing::router r{two_upstreams()};
    auto& web = *r.upstreams()[0];
    auto& e = *web.endpoints()[0];
    const auto t0 = routing::clock::now();
    e.connect_failed(t0);
    e.connect_failed(t0);
    EXPECT_TRUE(e.up());
    e.connect_failed(t0);
    EXPECT_FALSE(e.up());
    EXPECT_EQ(picked(web, t0 + std::chrono::seconds(1)), nullptr);
    EXPECT_EQ(picked(web, t0 + routing::endpoint::retry_after), &e);
    e.connect_succeeded();
    EXPECT_TRUE(e.up());
}

TEST(endpoint_choice, a_drained_endpoint_gets_no_new_sessions_until_undrained) {
    routing::router r{two_upstreams()};
    auto& api = *r.upstreams()[1];
    const auto now = routing::clock::now();
    api.endpoints()[0]->set_drained(true);
    api.endpoints()[1]->session_opened();  // busier, but the only one left
    EXPECT_EQ(picked(api, now), api.endpoints()[1].get());
    api.endpoints()[1]->set_drained(true);
    EXPECT_EQ(picked(api, now), nullptr);
    EXPECT_TRUE(api.endpoints()[0]->up());  // drained is not down
    api.endpoints()[0]->set_drained(false);
    EXPECT_EQ(picked(api, now), api.endpoints()[0].get());
}

TEST(health, thresholds_take_an_endpoint_down_and_bring_it_back) {
    routing::endpoint e{"app", 0, {"127.0.0.1", 9000}};
    e.set_checked(true);
    const auto now = routing::clock::now();
    EXPECT_FALSE(e.check_failed(3));
    EXPECT_FALSE(e.check_failed(3));
    EXPECT_FALSE(e.check_passed(2));  // a pass breaks the run of failures
    EXPECT_FALSE(e.check_failed(3));
    EXPECT_FALSE(e.check_failed(3));
    EXPECT_TRUE(e.up());
    EXPECT_TRUE(e.check_failed(3));  // the third in a row
    EXPECT_FALSE(e.up());
    EXPECT_FALSE(e.available(now));
    EXPECT_FALSE(e.check_passed(2));
    EXPECT_FALSE(e.check_failed(3));  // breaks the run of passes
    EXPECT_FALSE(e.check_passed(2));
    EXPECT_TRUE(e.check_passed(2));
    EXPECT_TRUE(e.up());
    EXPECT_TRUE(e.available(now));
}

TEST(health, checks_override_passive_failures) {
    routing::endpoint e{"app", 0, {"127.0.0.1", 9000}};
    e.set_checked(true);
    const auto now = routing::clock::now();
    for (int i = 0; i < 5; ++i) e.connect_failed(now);
    EXPECT_TRUE(e.up());
    EXPECT_TRUE(e.available(now));
}

TEST(health, a_drained_endpoint_that_comes_back_up_is_undrained) {
    routing::endpoint e{"app", 0, {"127.0.0.1", 9000}};
    e.set_checked(true);
    e.set_drained(true);
    EXPECT_FALSE(e.check_passed(1));  // up all along: still drained
    EXPECT_TRUE(e.drained());
    EXPECT_TRUE(e.check_failed(1));  // the backend stops for its restart
    EXPECT_TRUE(e.check_passed(1));  // and passes again
    EXPECT_FALSE(e.drained());
    EXPECT_TRUE(e.available(routing::clock::now()));
}

TEST(reload, a_new_router_keeps_the_state_of_endpoints_and_upstreams_it_still_has) {
    std::vector<std::string> slots;
    auto slot_of = [&](const std::string& name) {
        for (std::size_t i = 0; i < slots.size(); ++i)
            if (slots[i] == name) return i;
        slots.push_back(name);
        return slots.size() - 1;
    };
    routing::router before{two_upstreams(), nullptr, slot_of};
    before.upstreams()[1]->endpoints()[0]->set_drained(true);
    before.upstreams()[1]->endpoints()[1]->session_opened();
    before.upstreams()[1]->state().held = 4;

    config::proxy_config cfg = two_upstreams();
    cfg.upstreams[1].endpoints = {{"127.0.0.1", 3}, {"127.0.0.1", 4}};  // 2 goes, 4 comes
    cfg.upstreams.push_back({"chat", {{"127.0.0.1", 5}}});
    cfg.routes = {{"", "/", "chat"}, {"", "/api", "api"}};
    routing::router after{cfg, &before, slot_of};

    const auto* api = after.find("api");
    ASSERT_NE(api, nullptr);
    EXPECT_EQ(api->endpoints()[0], before.upstreams()[1]->endpoints()[1]);  // the same object: 3 kept
    EXPECT_EQ(api->endpoints()[0]->active_sessions(), 1);
    EXPECT_FALSE(api->endpoints()[1]->drained());
    EXPECT_EQ(api->state().held, 4u);
    EXPECT_EQ(api->metrics_slot(), 1u);
    EXPECT_EQ(after.find("chat")->metrics_slot(), 2u);
    EXPECT_EQ(after.find("chat")->endpoints()[0]->upstream_name(), "chat");
    EXPECT_EQ(after.match("x", "/")->name(), "chat");
    EXPECT_EQ(after.match("x", "/api/v1"), api);
}
