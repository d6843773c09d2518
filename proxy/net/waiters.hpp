#pragma once
// The timers of coroutines on one event loop that wait for something to change (a drain to
// end, an endpoint to come back). Waking them cancels their timers; each then looks again.
// Touched only on that loop's thread.

#include <boost/asio/steady_timer.hpp>

#include <algorithm>
#include <vector>

namespace wsdrain::net {

class waiters {
public:
    // `t` is woken by wake_all() for as long as the returned object lives.
    class registration {
    public:
        registration(waiters& w, boost::asio::steady_timer& t) : list_(w.timers_), timer_(&t) { list_.push_back(timer_); }
        ~registration() { list_.erase(std::remove(list_.begin(), list_.end(), timer_), list_.end()); }
        registration(const registration&) = delete;
        registration& operator=(const registration&) = delete;

    private:
        std::vector<boost::asio::steady_timer*>& list_;
        boost::asio::steady_timer* timer_;
    };

    [[nodiscard]] registration add(boost::asio::steady_timer& t) { return {*this, t}; }
    void wake_all() {
        for (auto* t : timers_) t->cancel();
    }

private:
    std::vector<boost::asio::steady_timer*> timers_;
};

}  // namespace wsdrain::net
