#pragma once
// The thin Asio shell around drain::controller: it feeds the controller time and events and
// carries out its actions on the event loops. It lives on loop 0 (with the admin listener);
// each loop paces the Close frames of its own sessions on its own timer.

#include <boost/asio/awaitable.hpp>
#include <boost/asio/steady_timer.hpp>

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "config/config.hpp"
#include "drain/controller.hpp"
#include "http/front.hpp"
#include "metrics/metrics.hpp"
#include "net/worker.hpp"

namespace wsdrain::app {

namespace asio = boost::asio;

class drain_shell {
public:
    drain_shell(std::vector<std::unique_ptr<net::worker>>& workers, http::front_context& front,
                const config::drain_config& cfg);
    ~drain_shell();

    // Any thread: posts to loop 0.
    void start_from_signal();
    // Loop 0 only.
    void start(drain::trigger how);
    std::string status_json() const;
    metrics::drain_view view() const;
    asio::awaitable<bool> wait_drained(std::chrono::milliseconds timeout);

    // Any thread.
    bool ready() const { return ready_.load(std::memory_order_relaxed); }

    // Called on loop 0 when the process should exit (status 0).
    std::function<void()> on_exit;

private:
    struct loop_state {  // touched only on its own loop's thread
        drain::pacer pacer;
        std::uint64_t issued = 0;
        std::unique_ptr<asio::steady_timer> timer;
    };

    void apply(const drain::actions& a);
    void tick();
    void schedule_tick();
    void begin_closing(std::size_t loop, drain::clock::time_point t0);
    void pace(std::size_t loop);
    void force(std::size_t loop);
    void post_to_all(const std::function<void(std::size_t)>& f);

    std::uint64_t sessions_open() const;
    std::uint64_t requests_in_flight() const;
    std::pair<std::uint64_t, std::uint64_t> closed_counts() const;  // clean, forced

    std::vector<std::unique_ptr<net::worker>>& workers_;
    http::front_context& front_;
    config::drain_config config_;
    drain::controller controller_;
    std::vector<loop_state> loops_;
    asio::steady_timer tick_timer_;
    std::vector<asio::steady_timer*> waiters_;
    std::chrono::system_clock::time_point started_wall_{};
    std::atomic<bool> ready_{true};
};

}  // namespace wsdrain::app
