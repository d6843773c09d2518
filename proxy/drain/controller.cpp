#include "drain/controller.hpp"

#include <algorithm>

namespace wsdrain::drain {

const char* to_string(state s) {
    switch (s) {
        case state::serving: return "serving";
        case state::draining: return "draining";
        case state::drained: return "drained";
    }
    return "?";
}

actions controller::start(clock::time_point now, trigger how, std::uint64_t sessions_open) {
    actions a;
    if (state_ != state::serving) return a;
    state_ = state::draining;
    trigger_ = how;
    exit_when_drained_ = how == trigger::signal;
    started_ = now;
    sessions_at_start_ = sessions_open;
    a.readiness_off = true;
    return a;
}

actions controller::signal(clock::time_point now, std::uint64_t sessions_open) {
    actions a;
    switch (state_) {
        case state::serving:
            return start(now, trigger::signal, sessions_open);
        case state::draining:
            if (trigger_ == trigger::admin && !exit_when_drained_) {
                exit_when_drained_ = true;  // the kubelet's SIGTERM after a preStop hook
                return a;
            }
            if (!forced_) {
                forced_ = true;
                a.force_all = true;
                exit_when_drained_ = true;
            }
            return a;
        case state::drained:
            a.exit = !exit_sent_;
            exit_sent_ = true;
            return a;
    }
    return a;
}

actions controller::tick(clock::time_point now, std::uint64_t sessions_open, std::uint64_t requests_in_flight) {
    actions a;
    if (state_ != state::draining) return a;
    if (!closing_ && now >= started_ + settings_.pre_delay) {
        closing_ = true;
        a.start_closing = true;
        a.closing_starts = now;
    }
    if (!forced_ && now >= started_ + settings_.timeout) {
        forced_ = true;
        a.force_all = true;
    }
    if (closing_ && sessions_open == 0 && requests_in_flight == 0) {
        state_ = state::drained;
        finished_ = now;
        a.drained = true;
        if (exit_when_drained_) {
            a.exit = true;
            exit_sent_ = true;
        }
    }
    return a;
}

clock::time_point controller::next_deadline() const {
    if (state_ != state::draining) return clock::time_point::max();
    if (!closing_) return started_ + settings_.pre_delay;
    if (!forced_) return started_ + settings_.timeout;
    return clock::time_point::max();
}

double controller::progress(std::uint64_t sessions_open) const {
    if (state_ == state::serving) return 0;
    if (state_ == state::drained) return 1;
    const std::uint64_t base = std::max(sessions_at_start_, sessions_open);
    if (base == 0) return closing_ ? 1 : 0;
    return 1.0 - static_cast<double>(sessions_open) / static_cast<double>(base);
}

std::uint64_t pacer::due(clock::time_point now) const {
    if (count_ == 0 || now < start_) return 0;
    if (spread_.count() <= 0) return count_;
    const auto elapsed = std::chrono::duration_cast<std::chrono::nanoseconds>(now - start_).count();
    const auto window = std::chrono::duration_cast<std::chrono::nanoseconds>(spread_).count();
    const auto n = static_cast<std::uint64_t>(static_cast<long double>(elapsed) * count_ / window) + 1;
    return std::min(n, count_);
}

clock::time_point pacer::when(std::uint64_t issued) const {
    if (issued >= count_) return clock::time_point::max();
    const auto window = std::chrono::duration_cast<std::chrono::nanoseconds>(spread_).count();
    return start_ + std::chrono::nanoseconds(static_cast<std::int64_t>(static_cast<long double>(window) * issued / count_));
}

}  // namespace wsdrain::drain
