// The drain controller and the pacer on a fake clock: no sockets, no sleeps.
#include "drain/controller.hpp"

#include <gtest/gtest.h>

#include <vector>

using namespace wsdrain::drain;
using namespace std::chrono_literals;

namespace {
const clock::time_point t0 = clock::time_point{} + 1000h;
settings cfg(duration pre = 0ms, duration spread = 3000ms, duration timeout = 10000ms) { return {pre, spread, timeout}; }
}  // namespace

TEST(drain_controller, readiness_goes_off_at_once_and_closing_waits_for_the_pre_delay) {
    controller c{cfg(2000ms)};
    auto a = c.start(t0, trigger::signal, 10);
    EXPECT_TRUE(a.readiness_off);
    EXPECT_FALSE(a.start_closing);
    EXPECT_EQ(c.current(), state::draining);
    EXPECT_EQ(c.next_deadline(), t0 + 2000ms);
    EXPECT_FALSE(c.tick(t0 + 1999ms, 10, 0).start_closing);
    EXPECT_FALSE(c.refusing());
    a = c.tick(t0 + 2000ms, 10, 0);
    EXPECT_TRUE(a.start_closing);
    EXPECT_EQ(a.closing_starts, t0 + 2000ms);
    EXPECT_TRUE(c.refusing());
    EXPECT_FALSE(c.tick(t0 + 2100ms, 10, 0).start_closing) << "each action is given once";
}

TEST(drain_controller, start_is_idempotent) {
    controller c{cfg()};
    c.start(t0, trigger::admin, 5);
    const auto again = c.start(t0 + 1s, trigger::admin, 3);
    EXPECT_FALSE(again.readiness_off);
    EXPECT_EQ(c.started(), t0);
    EXPECT_EQ(c.sessions_at_start(), 5u);
}

TEST(drain_controller, a_signal_drain_is_drained_and_exits_once_nothing_is_left) {
    controller c{cfg()};
    c.signal(t0, 3);
    c.tick(t0, 3, 0);
    EXPECT_DOUBLE_EQ(c.progress(3), 0);
    EXPECT_NEAR(c.progress(1), 2.0 / 3, 1e-9);
    EXPECT_FALSE(c.tick(t0 + 1s, 0, 1).drained) << "an HTTP request in flight holds the drain";
    const auto a = c.tick(t0 + 2s, 0, 0);
    EXPECT_TRUE(a.drained);
    EXPECT_TRUE(a.exit);
    EXPECT_EQ(c.current(), state::drained);
    EXPECT_DOUBLE_EQ(c.progress(0), 1);
}

TEST(drain_controller, sessions_that_end_on_their_own_count_as_progress) {
    controller c{cfg(0ms, 60000ms, 120000ms)};
    c.start(t0, trigger::signal, 4);
    c.tick(t0, 4, 0);
    EXPECT_NEAR(c.progress(2), 0.5, 1e-9);
    EXPECT_TRUE(c.tick(t0 + 1s, 0, 0).drained) << "drained before the spread ends";
}

TEST(drain_controller, nothing_to_drain_is_drained_at_once_with_progress_1) {
    controller c{cfg()};
    c.start(t0, trigger::signal, 0);
    const auto a = c.tick(t0, 0, 0);
    EXPECT_TRUE(a.drained);
    EXPECT_DOUBLE_EQ(c.progress(0), 1);
}

TEST(drain_controller, the_deadline_forces_what_is_left) {
    controller c{cfg(1000ms, 3000ms, 10000ms)};
    c.start(t0, trigger::signal, 5);
    c.tick(t0 + 1s, 5, 0);
    EXPECT_EQ(c.next_deadline(), t0 + 10s);
    EXPECT_FALSE(c.tick(t0 + 9999ms, 2, 0).force_all);
    EXPECT_TRUE(c.tick(t0 + 10s, 2, 0).force_all);
    EXPECT_FALSE(c.tick(t0 + 10100ms, 1, 0).force_all);
    EXPECT_TRUE(c.tick(t0 + 10200ms, 0, 0).exit);
}

TEST(drain_controller, a_second_signal_forces_everything_at_once) {
    controller c{cfg(0ms, 60000ms, 120000ms)};
    c.signal(t0, 100);
    c.tick(t0, 100, 0);
    const auto a = c.signal(t0 + 1s, 99);
    EXPECT_TRUE(a.force_all);
    EXPECT_FALSE(c.signal(t0 + 2s, 50).force_all) << "forced once";
    EXPECT_TRUE(c.tick(t0 + 3s, 0, 0).exit);
}

TEST(drain_controller, an_admin_drain_stays_up_until_a_signal_which_then_exits_at_once) {
    controller c{cfg()};
    c.start(t0, trigger::admin, 1);
    c.tick(t0, 1, 0);
    const auto drained = c.tick(t0 + 1s, 0, 0);
    EXPECT_TRUE(drained.drained);
    EXPECT_FALSE(drained.exit);
    const auto sig = c.signal(t0 + 60s, 0);
    EXPECT_TRUE(sig.exit);
    EXPECT_FALSE(sig.force_all);
}

TEST(drain_controller, a_signal_during_an_admin_drain_is_not_a_second_signal) {
    controller c{cfg(0ms, 60000ms, 120000ms)};
    c.start(t0, trigger::admin, 10);  // the preStop hook's `wsdrain drain`
    c.tick(t0, 10, 0);
    const auto first = c.signal(t0 + 1s, 9);  // the kubelet's SIGTERM
    EXPECT_FALSE(first.force_all);
    EXPECT_FALSE(first.exit);
    EXPECT_TRUE(c.tick(t0 + 30s, 0, 0).exit) << "exits when the drain ends";
}

TEST(drain_controller, a_signal_then_another_during_an_admin_drain_forces) {
    controller c{cfg(0ms, 60000ms, 120000ms)};
    c.start(t0, trigger::admin, 10);
    c.signal(t0 + 1s, 10);
    EXPECT_TRUE(c.signal(t0 + 2s, 10).force_all);
}

TEST(drain_pacer, spreads_closes_evenly_over_the_window) {
    pacer p{t0, 3000ms, 60};
    EXPECT_EQ(p.due(t0 - 1ms), 0u);
    EXPECT_EQ(p.due(t0), 1u);
    EXPECT_EQ(p.due(t0 + 750ms), 16u);
    EXPECT_EQ(p.due(t0 + 1500ms), 31u);
    EXPECT_EQ(p.due(t0 + 2999ms), 60u);
    EXPECT_EQ(p.due(t0 + 1h), 60u);
    EXPECT_EQ(p.when(0), t0);
    EXPECT_EQ(p.when(30), t0 + 1500ms);
    EXPECT_EQ(p.when(60), clock::time_point::max());
    // Every one-second bucket holds the same share.
    std::vector<int> buckets(3);
    for (std::uint64_t i = 0; i < 60; ++i) ++buckets[std::chrono::duration_cast<std::chrono::seconds>(p.when(i) - t0).count()];
    EXPECT_EQ(buckets, (std::vector<int>{20, 20, 20}));
}

TEST(drain_pacer, no_spread_closes_all_at_once_and_no_sessions_close_none) {
    EXPECT_EQ((pacer{t0, 0ms, 7}.due(t0)), 7u);
    EXPECT_EQ((pacer{t0, 5000ms, 0}.due(t0 + 1h)), 0u);
}
