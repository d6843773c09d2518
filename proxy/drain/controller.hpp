#pragma once
// The drain, decided without I/O (SPEC section 2). The shell feeds it the time and what
// happened (start, tick, a signal) and carries out the actions it returns; tests drive it
// with a fake clock.
//
//  serving ──start──▶ draining ─────────────────────────────────────────────▶ drained
//                      │ readiness off at once                               (no session,
//                      │ after pre_delay: refuse new requests, close the      no request
//                      │   sessions, spread over `spread` (see pacer)         left)
//                      │ at `timeout` from the start, or on a second signal:
//                      │   force every session closed
//
// Exit: a drain begun by a signal exits once drained. One begun through the admin API stays
// up, drained, until a signal; a signal during such a drain is not a "second" signal: the
// process exits when the drain ends.

#include <chrono>
#include <cstdint>

namespace wsdrain::drain {

using clock = std::chrono::steady_clock;
using duration = std::chrono::milliseconds;

enum class state : std::uint8_t { serving, draining, drained };
enum class trigger : std::uint8_t { signal, admin };

const char* to_string(state s);

struct settings {
    duration pre_delay{0};
    duration spread{5000};
    duration timeout{25000};
};

// What the shell must do now. Each flag is returned once, when it becomes true.
struct actions {
    bool readiness_off = false;  // /readyz answers 503
    bool start_closing = false;  // refuse new requests; close sessions paced over `spread`
    bool force_all = false;      // close every session now (deadline or second signal)
    bool drained = false;        // nothing left
    bool exit = false;           // stop the process (status 0)
    clock::time_point closing_starts{};  // with start_closing: the pacing window's start
};

class controller {
public:
    explicit controller(settings s) : settings_(s) {}

    // Starts a drain (idempotent: a second start changes nothing).
    actions start(clock::time_point now, trigger how, std::uint64_t sessions_open);
    // A SIGTERM or SIGINT.
    actions signal(clock::time_point now, std::uint64_t sessions_open);
    // Regular progress: how many sessions and plain requests are still open.
    actions tick(clock::time_point now, std::uint64_t sessions_open, std::uint64_t requests_in_flight);

    // When tick() must be called next at the latest (time_point::max() while serving).
    clock::time_point next_deadline() const;

    state current() const { return state_; }
    clock::time_point started() const { return started_; }
    clock::time_point finished() const { return finished_; }
    std::uint64_t sessions_at_start() const { return sessions_at_start_; }
    bool refusing() const { return closing_; }
    // 0 while serving; the share of the sessions present at the start that are gone; 1 once
    // drained (and at once when there was nothing to drain).
    double progress(std::uint64_t sessions_open) const;

private:
    settings settings_;
    state state_ = state::serving;
    trigger trigger_ = trigger::admin;
    clock::time_point started_{}, finished_{};
    std::uint64_t sessions_at_start_ = 0;
    bool closing_ = false;
    bool forced_ = false;
    bool exit_when_drained_ = false;
    bool exit_sent_ = false;
};

// Spreads `count` closes evenly over [start, start + spread): close i is due at
// start + spread * i / count, so the first goes at once and the last a step before the end.
class pacer {
public:
    pacer() = default;
    pacer(clock::time_point start, duration spread, std::uint64_t count)
        : start_(start), spread_(spread), count_(count) {}

    // How many closes are due by `now` in all.
    std::uint64_t due(clock::time_point now) const;
    // When close number `issued` (0-based) is due; time_point::max() past the last.
    clock::time_point when(std::uint64_t issued) const;
    std::uint64_t count() const { return count_; }

private:
    clock::time_point start_{};
    duration spread_{0};
    std::uint64_t count_ = 0;
};

}  // namespace wsdrain::drain
