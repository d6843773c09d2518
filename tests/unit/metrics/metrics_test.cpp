#include "metrics/metrics.hpp"

#include <gtest/gtest.h>

using namespace wsdrain::metrics;

TEST(metrics, every_label_value_is_present_from_the_start_at_zero) {
    registry r{{"app", "chat"}, 2, "1.2.3"};
    const std::string text = r.serialize({}, {{"app", "127.0.0.1:9000", true}});
    for (const char* result : {"ok", "rejected_draining", "rejected_limit", "backend_refused", "backend_error"})
        EXPECT_NE(text.find(std::string("wsdrain_upgrades_total{result=\"") + result + "\",upstream=\"chat\"} 0"),
                  std::string::npos)
            << result;
    for (const char* reason : {"client", "backend", "drain_clean", "drain_forced", "idle", "error"})
        EXPECT_NE(text.find(std::string("wsdrain_sessions_closed_total{reason=\"") + reason + "\",upstream=\"app\"} 0"),
                  std::string::npos)
            << reason;
    EXPECT_NE(text.find("wsdrain_build_info{version=\"1.2.3\"} 1"), std::string::npos);
    EXPECT_NE(text.find("wsdrain_upstream_endpoint_up{endpoint=\"127.0.0.1:9000\",upstream=\"app\"} 1"), std::string::npos);
    EXPECT_NE(text.find("wsdrain_frames_dropped_total{direction=\"to_client\",reason=\"peer_gone\"} 0"), std::string::npos);
}

TEST(metrics, thread_shards_are_summed_at_scrape_time) {
    registry r{{"app"}, 2, "x"};
    r.shard(0).frames[0].add(3);
    r.shard(1).frames[0].add(4);
    r.shard(0).upstreams[0].sessions_active.add(2);
    r.shard(1).upstreams[0].sessions_active.add(1);
    r.shard(1).upstreams[0].session_duration.observe(20);
    r.shard(0).upstreams[0].session_duration.observe(2);
    const std::string text = r.serialize({}, {});
    EXPECT_NE(text.find("wsdrain_frames_total{direction=\"to_backend\"} 7"), std::string::npos) << text;
    EXPECT_NE(text.find("wsdrain_sessions_active{upstream=\"app\"} 3"), std::string::npos);
    EXPECT_EQ(r.sessions_active(), 3);
    EXPECT_NE(text.find("wsdrain_session_duration_seconds_bucket{upstream=\"app\",le=\"5\"} 1"), std::string::npos) << text;
    EXPECT_NE(text.find("wsdrain_session_duration_seconds_bucket{upstream=\"app\",le=\"30\"} 2"), std::string::npos);
    EXPECT_NE(text.find("wsdrain_session_duration_seconds_count{upstream=\"app\"} 2"), std::string::npos);
}
