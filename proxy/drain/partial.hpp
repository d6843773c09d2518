#pragma once
// A partial drain (SPEC section 8, `POST /drain?fraction=F&spread=D`), decided without I/O:
// which share of the open sessions to close, per event loop and per backend endpoint, and in
// which order. The shell (app::drain_shell) counts the sessions on each loop, asks for the
// quotas here, and paces the chosen sessions' closes with the same pacer as the full drain.
//
// "Chosen evenly across endpoints": each endpoint loses round(F * its sessions), whichever
// loops they live on; a loop's share of an endpoint's quota is proportional to the sessions
// of that endpoint it holds.

#include <cstdint>
#include <optional>
#include <string_view>
#include <vector>

namespace wsdrain::drain {

// "0.25", "1", "1.0", ".5": a plain decimal in (0, 1]; nullopt otherwise (no exponent, sign,
// percent or spaces).
std::optional<double> parse_fraction(std::string_view text);

// counts[loop][endpoint]: the sessions each loop holds for each endpoint (every row as long
// as the first). Returns quota[loop][endpoint]: per endpoint, round(fraction * its total)
// (halves round up), split over the loops in proportion to what they hold (largest
// remainder; ties go to the lower loop). A quota never exceeds the count it comes from.
std::vector<std::vector<std::uint64_t>> partial_quotas(const std::vector<std::vector<std::uint64_t>>& counts,
                                                       double fraction);

// The order of one loop's closes when it closes picks[e] sessions of endpoint e: endpoint
// indices, each endpoint's closes spread over the whole sequence (close j of endpoint e sits
// at (j + 0.5) / picks[e]; ties: lower endpoint first), so that every endpoint sheds its
// sessions evenly over the pacing window instead of one endpoint after the other.
std::vector<std::size_t> interleave(const std::vector<std::uint64_t>& picks);

}  // namespace wsdrain::drain
