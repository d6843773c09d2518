// A partial drain's choice of sessions, without sockets: how many per loop and endpoint, and
// in which order each loop closes them.
#include "drain/partial.hpp"

#include <gtest/gtest.h>

#include <map>
#include <numeric>
#include <random>

using namespace wsdrain::drain;

namespace {

std::uint64_t endpoint_total(const std::vector<std::vector<std::uint64_t>>& m, std::size_t e) {
    std::uint64_t n = 0;
    for (const auto& row : m)
        n += row[e];
    return n;
}

}  // namespace

TEST(partial_drain, a_fraction_is_a_plain_decimal_above_0_and_at_most_1) {
    EXPECT_EQ(parse_fraction("0.25"), 0.25);
    EXPECT_EQ(parse_fraction("1"), 1.0);
    EXPECT_EQ(parse_fraction("1.0"), 1.0);
    EXPECT_EQ(parse_fraction(".5"), 0.5);
    EXPECT_EQ(parse_fraction("0.001"), 0.001);
    for (const char* bad : {"", "0", "0.0", "1.01", "2", "-0.5", "+0.5", "1e-1", "0.5 ", " 0.5", "25%", "nan", "inf",
                            "0x0.8", "1.", ".", "0.5.1", "abc"})
        EXPECT_FALSE(parse_fraction(bad)) << "'" << bad << "'";
}

TEST(partial_drain, a_quarter_of_40_sessions_on_one_endpoint_is_10_split_over_the_loops_by_their_share) {
    const auto q = partial_quotas({{21}, {19}}, 0.25);
    ASSERT_EQ(q.size(), 2u);
    EXPECT_EQ(q[0][0] + q[1][0], 10u);
    // Exact shares 5.25 and 4.75: 5 each (the larger remainder, 0.75, gets the unit left).
    EXPECT_EQ(q[0][0], 5u);
    EXPECT_EQ(q[1][0], 5u);
}

TEST(partial_drain, each_endpoint_loses_its_own_share_rounded) {
    // Endpoint 0: 30 sessions, endpoint 1: 10, endpoint 2: 0; a half of each.
    const auto q = partial_quotas({{20, 4, 0}, {10, 6, 0}}, 0.5);
    EXPECT_EQ(endpoint_total(q, 0), 15u);
    EXPECT_EQ(endpoint_total(q, 1), 5u);
    EXPECT_EQ(endpoint_total(q, 2), 0u);
    EXPECT_EQ(q[0][0], 10u);
    EXPECT_EQ(q[1][0], 5u);
    EXPECT_EQ(q[0][1], 2u);
    EXPECT_EQ(q[1][1], 3u);
}

TEST(partial_drain, halves_round_up_and_the_whole_fraction_takes_everything) {
    EXPECT_EQ(endpoint_total(partial_quotas({{1}}, 0.5), 0), 1u);
    EXPECT_EQ(endpoint_total(partial_quotas({{10}}, 0.15), 0), 2u) << "1.5 rounds up, even though 0.15 * 10 < 1.5";
    EXPECT_EQ(endpoint_total(partial_quotas({{3}}, 0.1), 0), 0u) << "0.3 rounds down to nothing";
    const auto all = partial_quotas({{7, 2}, {5, 0}, {1, 9}}, 1.0);
    EXPECT_EQ(all, (std::vector<std::vector<std::uint64_t>>{{7, 2}, {5, 0}, {1, 9}}));
}

TEST(partial_drain, quotas_add_up_and_never_exceed_what_a_loop_holds) {
    std::mt19937 rng(42);
    for (int round = 0; round < 2000; ++round) {
        const std::size_t loops = 1 + rng() % 6, endpoints = 1 + rng() % 5;
        std::vector<std::vector<std::uint64_t>> counts(loops, std::vector<std::uint64_t>(endpoints));
        for (auto& row : counts)
            for (auto& n : row)
                n = rng() % 40;
        const double f = (1 + rng() % 1000) / 1000.0;
        const auto q = partial_quotas(counts, f);
        ASSERT_EQ(q.size(), loops);
        for (std::size_t e = 0; e < endpoints; ++e) {
            const auto total = endpoint_total(counts, e);
            const auto expected = static_cast<std::uint64_t>(std::floor(f * static_cast<double>(total) + 0.5 + 1e-9));
            EXPECT_EQ(endpoint_total(q, e), std::min(total, expected)) << "f=" << f << " total=" << total;
            for (std::size_t l = 0; l < loops; ++l) {
                EXPECT_LE(q[l][e], counts[l][e]);
                // Proportional: within one session of the loop's exact share.
                const double exact = static_cast<double>(endpoint_total(q, e)) * static_cast<double>(counts[l][e]) /
                                     static_cast<double>(std::max<std::uint64_t>(total, 1));
                EXPECT_LT(std::abs(static_cast<double>(q[l][e]) - exact), 1.0);
            }
        }
    }
}

TEST(partial_drain, no_loops_or_no_sessions_choose_nothing) {
    EXPECT_TRUE(partial_quotas({}, 0.5).empty());
    EXPECT_EQ(partial_quotas({{0, 0}, {0, 0}}, 1.0), (std::vector<std::vector<std::uint64_t>>{{0, 0}, {0, 0}}));
    EXPECT_TRUE(interleave({}).empty());
    EXPECT_TRUE(interleave({0, 0}).empty());
}

TEST(partial_drain, closes_of_each_endpoint_are_interleaved_over_the_whole_sequence) {
    EXPECT_EQ(interleave({2, 2}), (std::vector<std::size_t>{0, 1, 0, 1}));
    EXPECT_EQ(interleave({3, 1}), (std::vector<std::size_t>{0, 0, 1, 0})) << "the single close sits in the middle";
    EXPECT_EQ(interleave({4, 0, 2}), (std::vector<std::size_t>{0, 2, 0, 0, 2, 0}));

    // However uneven, every endpoint's closes are spread: its j-th close lands near the
    // position (j + 0.5) / picks of the sequence, and each appears picks[e] times.
    const std::vector<std::uint64_t> picks{17, 5, 1, 9};
    const auto order = interleave(picks);
    const auto n = static_cast<double>(order.size());
    ASSERT_EQ(order.size(), 32u);
    std::map<std::size_t, std::uint64_t> seen;
    for (std::size_t pos = 0; pos < order.size(); ++pos) {
        const std::size_t e = order[pos];
        const double expected = (static_cast<double>(seen[e]) + 0.5) / static_cast<double>(picks[e]) * n;
        EXPECT_NEAR(static_cast<double>(pos) + 0.5, expected, static_cast<double>(picks.size()))
            << "endpoint " << e << " close " << seen[e];
        ++seen[e];
    }
    for (std::size_t e = 0; e < picks.size(); ++e)
        EXPECT_EQ(seen[e], picks[e]);
}
