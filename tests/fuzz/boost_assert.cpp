// Boost's assertions in the fuzz build (BOOST_ENABLE_ASSERT_HANDLER, set with
// WSDRAIN_BUILD_FUZZERS) fail as usual, except one that is itself wrong.

#include <cstdio>
#include <cstdlib>
#include <string_view>

namespace boost {

void assertion_failed(const char* expr, const char* function, const char* file, long line) {
    // Beast 1.81's chunk parser asserts that a final chunk's header, met again after need_more,
    // spans at least 5 bytes; split reads ("0\r\n", then "\r") give it 3 or 4, and the code
    // after the assertion asks for more, rightly. Fixed upstream: boostorg/beast#2861.
    if (std::string_view(expr) == "n >= 5" &&
        std::string_view(function).find("parse_chunk_header") != std::string_view::npos)
        return;
    std::fprintf(stderr, "%s:%ld: %s: Assertion `%s' failed.\n", file, line, function, expr);
    std::abort();
}

void assertion_failed_msg(const char* expr, const char* msg, const char* function, const char* file, long line) {
    std::fprintf(stderr, "%s:%ld: %s: Assertion `%s' failed: %s\n", file, line, function, expr, msg);
    std::abort();
}

}  // namespace boost
