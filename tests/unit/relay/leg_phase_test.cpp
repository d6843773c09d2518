// The closing handshake of one leg, as RFC 6455 section 7 describes it.
#include "relay/leg_phase.hpp"

#include <gtest/gtest.h>

using namespace wsdrain::relay;

TEST(leg_phase, a_close_each_way_completes_the_handshake_whoever_begins) {
    EXPECT_EQ(after_close_to(after_close_from(leg_phase::open)), leg_phase::closed);
    EXPECT_EQ(after_close_from(after_close_to(leg_phase::open)), leg_phase::closed);
}

TEST(leg_phase, nothing_is_sent_to_a_leg_after_its_close) {
    EXPECT_TRUE(accepts_frames(leg_phase::open));
    EXPECT_TRUE(accepts_frames(leg_phase::close_received));  // it may still get the rest, then our Close
    EXPECT_FALSE(accepts_frames(leg_phase::close_sent));
    EXPECT_FALSE(accepts_frames(leg_phase::closed));
    EXPECT_FALSE(accepts_frames(leg_phase::failed));
    EXPECT_FALSE(accepts_frames(leg_phase::gone));
}

TEST(leg_phase, an_end_before_the_handshake_is_abnormal_and_after_it_is_not) {
    EXPECT_EQ(after_end(leg_phase::open), leg_phase::gone);
    EXPECT_EQ(after_end(leg_phase::close_sent), leg_phase::gone);
    EXPECT_EQ(after_end(leg_phase::close_received), leg_phase::gone);
    EXPECT_EQ(after_end(leg_phase::closed), leg_phase::closed);
    EXPECT_EQ(after_end(leg_phase::failed), leg_phase::failed);
}

TEST(leg_phase, fin_follows_a_complete_handshake_or_a_failure_only) {
    EXPECT_TRUE(wants_fin(leg_phase::closed));
    EXPECT_TRUE(wants_fin(leg_phase::failed));
    EXPECT_FALSE(wants_fin(leg_phase::close_sent));
    EXPECT_FALSE(wants_fin(leg_phase::open));
}

TEST(leg_phase, the_survivor_learns_why_the_other_leg_went) {
    EXPECT_EQ(close_code_when_gone(leg_id::upstream), 1014);    // bad gateway, to the client
    EXPECT_EQ(close_code_when_gone(leg_id::downstream), 1001);  // going away, to the backend
}
