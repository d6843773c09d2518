// Log lines as a reader sees them: text and JSON, strings quoted where they must be, numbers
// formatted, and lines below the level not written.
#include "log/log.hpp"

#include <gtest/gtest.h>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>

#include <cstdint>
#include <sstream>
#include <string>

namespace {

namespace log = wsdrain::log;

// Sets the logger up as the proxy does, then captures its lines instead of writing stderr.
std::ostringstream& capture(wsdrain::config::log_format format, const std::string& level) {
    static std::ostringstream out;
    out.str("");
    spdlog::drop_all();
    wsdrain::config::log_config cfg;
    cfg.level = level;
    cfg.format = format;
    log::setup(cfg);
    auto& sinks = spdlog::default_logger_raw()->sinks();
    sinks.clear();
    sinks.push_back(std::make_shared<spdlog::sinks::ostream_sink_st>(out));
    spdlog::default_logger_raw()->set_pattern("%v");
    return out;
}

TEST(log, a_text_line_quotes_only_values_that_need_it_and_formats_numbers) {
    auto& out = capture(wsdrain::config::log_format::text, "info");
    const std::string owned = "app-1";
    log::info("session closed", {{"endpoint", owned},
                                 {"client", std::string("10.0.0.1")},  // a temporary lives through the call
                                 {"reason", "drain clean"},
                                 {"duration_s", 1.5},
                                 {"frames", std::uint64_t{18446744073709551615u}},
                                 {"delta", std::int64_t{-42}},
                                 {"empty", ""}});
    EXPECT_EQ(out.str(),
              "session closed endpoint=app-1 client=10.0.0.1 reason=\"drain clean\" duration_s=1.500 "
              "frames=18446744073709551615 delta=-42 empty=\"\"\n");
}

TEST(log, a_json_line_is_one_object_with_numbers_unquoted_and_strings_escaped) {
    auto& out = capture(wsdrain::config::log_format::json, "info");
    log::warn("backend failed", {{"error", "bad \"answer\"\n"}, {"code", 1014}, {"ratio", 0.25}});
    EXPECT_EQ(out.str(), "\"msg\":\"backend failed\",\"error\":\"bad \\\"answer\\\"\\n\",\"code\":1014,\"ratio\":0.250\n");
}

TEST(log, lines_below_the_level_are_not_written) {
    auto& out = capture(wsdrain::config::log_format::text, "warn");
    log::info("session closed", {{"duration_s", 2.0}});
    log::debug("detail", {{"n", 1}});
    EXPECT_EQ(out.str(), "");
    log::error("failed", {{"n", 1}});
    EXPECT_EQ(out.str(), "failed n=1\n");
}

}  // namespace
