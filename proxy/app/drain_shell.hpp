#pragma once
// The thin Asio shell around drain::controller: it feeds the controller time and events and
// carries out its actions on the event loops. It lives on loop 0 (with the admin listener);
// each loop paces the Close frames of its own sessions on its own timer.
//
// It also runs partial drains (SPEC section 8): a share of the sessions, chosen evenly across
// endpoints (drain/partial.hpp), closed with the same pacer and handshake while the proxy goes
// on serving. A full drain that begins closing takes over the sessions a partial one has not
// asked yet.

#include <boost/asio/awaitable.hpp>
#include <boost/asio/steady_timer.hpp>

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "config/config.hpp"
#include "drain/controller.hpp"
#include "http/front.hpp"
#include "metrics/metrics.hpp"
#include "net/waiters.hpp"
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
    // Starts a partial drain: `fraction` of the sessions (0 < fraction <= 1) closed over
    // `spread` (drain.spread when absent). Returns once the sessions are chosen: "" when it
    // started, else why it cannot (a drain or another partial drain is under way).
    asio::awaitable<std::string> start_partial(double fraction, std::optional<std::chrono::milliseconds> spread);
    // Closes the sessions of these (drained) endpoints with 1012 over drain.spread, while
    // serving; returns how many were asked to close, once every loop has chosen them.
    asio::awaitable<std::uint64_t> retire(const std::vector<const routing::endpoint*>& endpoints);
    // After an undrain: sessions not yet asked to close whose endpoint is no longer drained
    // stay open.
    asio::awaitable<void> unretire();
    // A reload: drain settings for drains that start from now on.
    void set_config(const config::drain_config& cfg);
    std::string status_json() const;
    metrics::drain_view view() const;
    asio::awaitable<bool> wait_drained(std::chrono::milliseconds timeout);

    // Any thread.
    bool ready() const { return ready_.load(std::memory_order_relaxed); }

    // Called on loop 0 when the process should exit (status 0).
    std::function<void()> on_exit;

private:
    // One paced series of drain closes on one loop, the full drain's or a partial one's: the
    // sessions at the front of `from` are asked to close as the pacer makes them due.
    struct closing_run {  // touched only on its own loop's thread, but for the two atomics
        net::drain_kind kind = net::drain_kind::full;
        drain::pacer pacer;
        std::shared_ptr<const config::drain_config> settings;  // the close code and reason, spread
        std::uint64_t issued = 0;
        net::session_list* from = nullptr;
        std::unique_ptr<asio::steady_timer> timer;
        std::atomic<std::uint64_t> asked{0};  // `issued`, for the status on loop 0
        std::atomic<bool> running{false};
    };
    struct loop_state {
        closing_run full, partial, retire;
    };
    // The partial drain under way or last run. Loop 0 only.
    struct partial_drain {
        double fraction = 0;
        std::chrono::milliseconds spread{0};
        std::chrono::system_clock::time_point started_wall{};
        std::uint64_t sessions_at_start = 0;
        std::uint64_t chosen = 0;
        std::uint64_t clean_before = 0, forced_before = 0;  // partial_closed_* at its start
        bool selecting = true;    // sessions being counted and chosen on the loops
        bool superseded = false;  // a full drain took over its sessions
    };
    struct endpoint_count {
        const routing::endpoint* endpoint;
        std::uint64_t sessions;
    };

    void apply(const drain::actions& a);
    void tick();
    void schedule_tick();
    void begin_closing(std::size_t loop, drain::clock::time_point t0, std::shared_ptr<const config::drain_config> cfg);
    void pace(std::size_t loop, closing_run& run);
    void force(std::size_t loop);
    asio::awaitable<std::vector<endpoint_count>> count_sessions(std::size_t loop);
    asio::awaitable<std::uint64_t> choose_sessions(std::size_t loop, std::vector<endpoint_count> quota,
                                                   drain::clock::time_point t0, std::chrono::milliseconds spread,
                                                   const std::shared_ptr<const config::drain_config>* cfg);
    bool partial_running() const;
    std::uint64_t partial_asked() const;
    std::pair<std::uint64_t, std::uint64_t> partial_closed_counts() const;  // clean, forced
    std::string partial_json() const;
    void post_to_all(const std::function<void(std::size_t)>& f);

    std::uint64_t sessions_open() const;
    std::uint64_t requests_in_flight() const;
    std::pair<std::uint64_t, std::uint64_t> closed_counts() const;  // clean, forced

    std::vector<std::unique_ptr<net::worker>>& workers_;
    http::front_context& front_;
    std::shared_ptr<const config::drain_config> config_;  // loop 0; each run keeps its own
    drain::controller controller_;
    std::vector<loop_state> loops_;
    asio::steady_timer tick_timer_;
    net::waiters waiters_;  // GET /drain/wait, woken when drained
    std::optional<partial_drain> partial_;
    std::chrono::system_clock::time_point started_wall_{};
    std::atomic<bool> ready_{true};
};

}  // namespace wsdrain::app
