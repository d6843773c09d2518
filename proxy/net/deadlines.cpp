#include "net/deadlines.hpp"

namespace wsdrain::net {

void deadline_queue::schedule(deadline& d, steady_clock::time_point at) {
    if (d.is_linked()) set_.erase(set_.iterator_to(d));
    d.at_ = at;
    set_.insert(d);
    if (at < armed_ && !expiring_) arm();
}

void deadline_queue::cancel(deadline& d) {
    if (d.is_linked()) set_.erase(set_.iterator_to(d));
    d.at_ = steady_clock::time_point::max();
    // The timer stays armed: when it fires early it re-arms for what is left.
}

void deadline_queue::arm() {
    armed_ = set_.empty() ? steady_clock::time_point::max() : set_.begin()->at_;
    if (armed_ == steady_clock::time_point::max()) return;
    timer_.expires_at(armed_);
    timer_.async_wait([this](const boost::system::error_code& ec) {
        if (ec) return;  // moved earlier (a new wait replaced this one), or shutting down
        armed_ = steady_clock::time_point::max();
        expire();
    });
}

void deadline_queue::expire() {
    const auto now = steady_clock::now();
    // A callback may schedule or cancel any deadline, itself included; each is taken off the
    // set before it runs, and the loop ends at the first one still in the future.
    expiring_ = true;  // the timer is armed once, after the loop
    while (!set_.empty() && set_.begin()->at_ <= now) {
        deadline& d = *set_.begin();
        set_.erase(set_.begin());
        d.at_ = steady_clock::time_point::max();
        d.fire_(d);
    }
    expiring_ = false;
    arm();
}

}  // namespace wsdrain::net
