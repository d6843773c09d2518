#include "drain/partial.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <numeric>
#include <string>

namespace wsdrain::drain {

std::optional<double> parse_fraction(std::string_view text) {
    const std::size_t dot = text.find('.');
    const std::string_view whole = text.substr(0, dot);
    const std::string_view decimals = dot == std::string_view::npos ? std::string_view{} : text.substr(dot + 1);
    auto digits = [](std::string_view s) {
        return std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
    };
    if (whole.size() + decimals.size() == 0 || !digits(whole) || !digits(decimals)) return std::nullopt;
    if (dot != std::string_view::npos && decimals.empty()) return std::nullopt;  // "1."
    const std::string normal =
        std::string(whole.empty() ? "0" : whole) + "." + std::string(decimals.empty() ? "0" : decimals);
    double value = 0;
    const auto [end, ec] = std::from_chars(normal.data(), normal.data() + normal.size(), value);
    if (ec != std::errc{} || end != normal.data() + normal.size()) return std::nullopt;
    if (!(value > 0 && value <= 1)) return std::nullopt;
    return value;
}

std::vector<std::vector<std::uint64_t>> partial_quotas(const std::vector<std::vector<std::uint64_t>>& counts,
                                                       double fraction) {
    std::vector<std::vector<std::uint64_t>> quota(counts.size());
    if (counts.empty()) return quota;
    const std::size_t endpoints = counts.front().size();
    for (auto& row : quota)
        row.assign(endpoints, 0);
    fraction = std::clamp(fraction, 0.0, 1.0);

    for (std::size_t e = 0; e < endpoints; ++e) {
        std::uint64_t total = 0;
        for (const auto& row : counts)
            total += row[e];
        if (total == 0) continue;
        // round(F * total), halves up; the small bias keeps 0.15 * 10 (1.4999...) at 2.
        const auto target = std::min<std::uint64_t>(
            total, static_cast<std::uint64_t>(std::floor(fraction * static_cast<double>(total) + 0.5 + 1e-9)));
        // Each loop's exact share is target * n / total: its whole part first, then the units
        // left over go to the largest remainders.
        std::vector<std::uint64_t> remainder(counts.size());
        std::uint64_t given = 0;
        for (std::size_t l = 0; l < counts.size(); ++l) {
            quota[l][e] = target * counts[l][e] / total;
            remainder[l] = target * counts[l][e] % total;
            given += quota[l][e];
        }
        std::vector<std::size_t> order(counts.size());
        std::iota(order.begin(), order.end(), std::size_t{0});
        std::stable_sort(order.begin(), order.end(),
                         [&](std::size_t a, std::size_t b) { return remainder[a] > remainder[b]; });
        for (std::size_t i = 0; given < target && i < order.size(); ++i) {
            if (remainder[order[i]] == 0) break;  // cannot happen while units are left; kept safe
            ++quota[order[i]][e];
            ++given;
        }
    }
    return quota;
}

std::vector<std::size_t> interleave(const std::vector<std::uint64_t>& picks) {
    struct slot {
        std::size_t endpoint;
        std::uint64_t index;
    };
    std::vector<slot> slots;
    slots.reserve(std::accumulate(picks.begin(), picks.end(), std::uint64_t{0}));
    for (std::size_t e = 0; e < picks.size(); ++e)
        for (std::uint64_t j = 0; j < picks[e]; ++j)
            slots.push_back({e, j});
    // Slot (e, j) sits at (2j + 1) / (2 picks[e]); compared by cross-multiplying, exactly.
    std::sort(slots.begin(), slots.end(), [&](const slot& a, const slot& b) {
        const auto left = (2 * a.index + 1) * picks[b.endpoint];
        const auto right = (2 * b.index + 1) * picks[a.endpoint];
        return left != right ? left < right : a.endpoint < b.endpoint;
    });
    std::vector<std::size_t> order;
    order.reserve(slots.size());
    for (const auto& s : slots)
        order.push_back(s.endpoint);
    return order;
}

}  // namespace wsdrain::drain
