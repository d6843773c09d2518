#include "app/drain_shell.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <algorithm>
#include <cstdio>
#include <ctime>

#include "log/log.hpp"

namespace wsdrain::app {

using drain::clock;

namespace {

std::string rfc3339(std::chrono::system_clock::time_point t) {
    const std::time_t secs = std::chrono::system_clock::to_time_t(t);
    std::tm tm{};
    gmtime_r(&secs, &tm);
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count() % 1000;
    char buf[96];
    std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                  tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<int>(ms));
    return buf;
}

}  // namespace

drain_shell::drain_shell(std::vector<std::unique_ptr<net::worker>>& workers, http::front_context& front,
                         const config::drain_config& cfg)
    : workers_(workers),
      front_(front),
      config_(cfg),
      controller_({cfg.pre_delay, cfg.spread, cfg.timeout}),
      loops_(workers.size()),
      tick_timer_(workers[0]->context()) {
    for (std::size_t i = 0; i < workers.size(); ++i)
        loops_[i].timer = std::make_unique<asio::steady_timer>(workers[i]->context());
}

drain_shell::~drain_shell() = default;

void drain_shell::post_to_all(const std::function<void(std::size_t)>& f) {
    for (std::size_t i = 0; i < workers_.size(); ++i) asio::post(workers_[i]->context(), [f, i] { f(i); });
}

std::uint64_t drain_shell::sessions_open() const {
    return static_cast<std::uint64_t>(std::max<std::int64_t>(0, front_.sessions.load(std::memory_order_relaxed)));
}

std::pair<std::uint64_t, std::uint64_t> drain_shell::closed_counts() const {
    std::uint64_t clean = 0, forced = 0;
    for (const auto& w : workers_) {
        clean += w->stats().drain_closed_clean.value();
        forced += w->stats().drain_closed_forced.value();
    }
    return {clean, forced};
}

std::uint64_t drain_shell::requests_in_flight() const {
    std::int64_t n = 0;
    for (const auto& w : workers_) n += w->stats().http_requests_in_flight.value();
    return static_cast<std::uint64_t>(std::max<std::int64_t>(0, n));
}

void drain_shell::start_from_signal() {
    asio::post(workers_[0]->context(), [this] { apply(controller_.signal(clock::now(), sessions_open())); });
}

void drain_shell::start(drain::trigger how) { apply(controller_.start(clock::now(), how, sessions_open())); }

void drain_shell::apply(const drain::actions& a) {
    if (a.readiness_off) {
        ready_ = false;
        started_wall_ = std::chrono::system_clock::now();
        post_to_all([this](std::size_t i) { workers_[i]->set_draining(true); });
        log::info("drain started", {{"sessions", controller_.sessions_at_start()},
                                    {"pre_delay_s", std::chrono::duration<double>(config_.pre_delay).count()},
                                    {"spread_s", std::chrono::duration<double>(config_.spread).count()},
                                    {"timeout_s", std::chrono::duration<double>(config_.timeout).count()}});
    }
    if (a.start_closing) {
        front_.refusing = true;
        const auto t0 = a.closing_starts;
        post_to_all([this, t0](std::size_t i) { begin_closing(i, t0); });
    }
    if (a.force_all) {
        log::warn("drain forcing the sessions left", {{"sessions", sessions_open()}});
        post_to_all([this](std::size_t i) { force(i); });
    }
    if (a.drained) {
        const auto [clean, forced] = closed_counts();
        log::info("drained", {{"duration_s", view().duration_seconds},
                              {"sessions_at_start", controller_.sessions_at_start()},
                              {"closed_clean", clean},
                              {"closed_forced", forced}});
        for (auto* t : waiters_) t->cancel();
    }
    if (a.exit && on_exit) on_exit();
    if (controller_.current() == drain::state::draining) schedule_tick();
}

void drain_shell::schedule_tick() {
    const auto at = std::min(clock::now() + std::chrono::milliseconds(100), controller_.next_deadline());
    tick_timer_.expires_at(at);
    tick_timer_.async_wait([this](const boost::system::error_code& ec) {
        if (!ec) tick();
    });
}

void drain_shell::tick() { apply(controller_.tick(clock::now(), sessions_open(), requests_in_flight())); }

// --- on each loop ----------------------------------------------------------------------

void drain_shell::begin_closing(std::size_t loop, clock::time_point t0) {
    net::worker& w = *workers_[loop];
    w.set_closing_sessions(true);
    // Idle keep-alive connections go now; busy ones after their response.
    for (auto& c : w.connections()) c.drain_close(0, {});
    std::uint64_t n = 0;
    for ([[maybe_unused]] auto& s : w.sessions()) ++n;
    loops_[loop].pacer = drain::pacer{t0, config_.spread, n};
    loops_[loop].issued = 0;
    pace(loop);
}

void drain_shell::pace(std::size_t loop) {
    net::worker& w = *workers_[loop];
    loop_state& l = loops_[loop];
    auto close_one = [&] {
        net::session_link& s = w.sessions().front();
        s.unlink();
        w.closing().push_back(s);
        s.drain_close(config_.close_code, config_.close_reason);
    };
    const std::uint64_t due = l.pacer.due(clock::now());
    for (; l.issued < due && !w.sessions().empty(); ++l.issued) close_one();
    if (w.sessions().empty()) return;
    if (l.issued >= l.pacer.count()) {  // upgraded after the count was taken
        while (!w.sessions().empty()) close_one();
        return;
    }
    l.timer->expires_at(l.pacer.when(l.issued));
    l.timer->async_wait([this, loop](const boost::system::error_code& ec) {
        if (!ec) pace(loop);
    });
}

void drain_shell::force(std::size_t loop) {
    loops_[loop].timer->cancel();
    workers_[loop]->force_close_all();
}

// --- status ----------------------------------------------------------------------------

metrics::drain_view drain_shell::view() const {
    metrics::drain_view v;
    const auto state = controller_.current();
    v.state = static_cast<int>(state);
    if (state == drain::state::serving) return v;
    const std::uint64_t open = sessions_open();
    v.started_timestamp = std::chrono::duration<double>(started_wall_.time_since_epoch()).count();
    v.sessions_at_start = static_cast<double>(controller_.sessions_at_start());
    v.sessions_remaining = static_cast<double>(open);
    v.progress = controller_.progress(open);
    const auto end = state == drain::state::drained ? controller_.finished() : clock::now();
    v.duration_seconds = std::chrono::duration<double>(end - controller_.started()).count();
    return v;
}

std::string drain_shell::status_json() const {
    const metrics::drain_view v = view();
    const auto [clean, forced] = closed_counts();
    char buf[512];
    const std::string started =
        controller_.current() == drain::state::serving ? "null" : "\"" + rfc3339(started_wall_) + "\"";
    std::snprintf(buf, sizeof buf,
                  "{\"state\":\"%s\",\"started_at\":%s,\"elapsed_seconds\":%.3f,\"sessions_at_start\":%llu,"
                  "\"sessions_active\":%llu,\"closed_clean\":%llu,\"closed_forced\":%llu,\"progress\":%.4f}\n",
                  drain::to_string(controller_.current()), started.c_str(), v.duration_seconds,
                  static_cast<unsigned long long>(controller_.sessions_at_start()),
                  static_cast<unsigned long long>(sessions_open()), static_cast<unsigned long long>(clean),
                  static_cast<unsigned long long>(forced), v.progress);
    return buf;
}

asio::awaitable<bool> drain_shell::wait_drained(std::chrono::milliseconds timeout) {
    if (controller_.current() == drain::state::drained) co_return true;
    asio::steady_timer timer{co_await asio::this_coro::executor, timeout};
    struct registration {  // the waiter leaves the list however the wait ends
        std::vector<asio::steady_timer*>& list;
        asio::steady_timer* t;
        ~registration() { list.erase(std::remove(list.begin(), list.end(), t), list.end()); }
    } reg{waiters_, &timer};
    waiters_.push_back(&timer);
    co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
    co_return controller_.current() == drain::state::drained;
}

}  // namespace wsdrain::app
