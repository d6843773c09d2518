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

TEST(endpoint_choice, picks_the_endpoint_with_the_fewest_sessions) {
    routing::router r{two_upstreams()};
    auto& api = *r.upstreams()[1];
    const auto now = routing::clock::now();
    api.endpoints()[0]->session_opened();
    EXPECT_EQ(api.pick(now), api.endpoints()[1].get());
    api.endpoints()[1]->session_opened();
    api.endpoints()[1]->session_opened();
    EXPECT_EQ(api.pick(now), api.endpoints()[0].get());
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
    EXPECT_EQ(web.pick(t0 + std::chrono::seconds(1)), nullptr);
    EXPECT_EQ(web.pick(t0 + routing::endpoint::retry_after), &e);
    e.connect_succeeded();
    EXPECT_TRUE(e.up());
}
