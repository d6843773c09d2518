#include "app/drain_shell.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <algorithm>
#include <cstdio>
#include <ctime>
#include <numeric>
#include <unordered_map>

#include "codec/frame.hpp"
#include "drain/partial.hpp"
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
      config_(std::make_shared<const config::drain_config>(cfg)),
      controller_({cfg.pre_delay, cfg.spread, cfg.timeout}),
      loops_(workers.size()),
      tick_timer_(workers[0]->context()) {
    for (std::size_t i = 0; i < workers.size(); ++i) {
        loops_[i].full.timer = std::make_unique<asio::steady_timer>(workers[i]->context());
        loops_[i].full.from = &workers[i]->sessions();
        loops_[i].partial.timer = std::make_unique<asio::steady_timer>(workers[i]->context());
        loops_[i].partial.from = &workers[i]->chosen();
        loops_[i].partial.kind = net::drain_kind::partial;
        loops_[i].retire.timer = std::make_unique<asio::steady_timer>(workers[i]->context());
        loops_[i].retire.from = &workers[i]->retiring();
        loops_[i].retire.kind = net::drain_kind::endpoint;
    }
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
                                    {"pre_delay_s", std::chrono::duration<double>(config_->pre_delay).count()},
                                    {"spread_s", std::chrono::duration<double>(config_->spread).count()},
                                    {"timeout_s", std::chrono::duration<double>(config_->timeout).count()}});
    }
    if (a.start_closing) {
        front_.refusing = true;
        if (partial_ && partial_running()) partial_->superseded = true;
        const auto t0 = a.closing_starts;
        post_to_all([this, t0, cfg = config_](std::size_t i) { begin_closing(i, t0, cfg); });
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
        waiters_.wake_all();
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

void drain_shell::begin_closing(std::size_t loop, clock::time_point t0,
                                std::shared_ptr<const config::drain_config> cfg) {
    net::worker& w = *workers_[loop];
    loop_state& l = loops_[loop];
    w.set_closing_sessions(true);
    // Idle keep-alive connections go now; busy ones after their response.
    for (auto& c : w.connections()) c.drain_close(0, {}, net::drain_kind::full);
    // A partial drain under way stops here: the sessions it has not asked yet go back to
    // the others, oldest first, and this drain closes them all.
    l.partial.timer->cancel();
    l.partial.running = false;
    l.retire.timer->cancel();
    l.retire.running = false;
    w.sessions().splice(w.sessions().begin(), w.retiring());
    w.sessions().splice(w.sessions().begin(), w.chosen());
    std::uint64_t n = 0;
    for ([[maybe_unused]] auto& s : w.sessions()) ++n;
    l.full.pacer = drain::pacer{t0, cfg->spread, n};
    l.full.settings = std::move(cfg);
    l.full.issued = 0;
    l.full.running = true;
    pace(loop, l.full);
}

void drain_shell::pace(std::size_t loop, closing_run& run) {
    net::worker& w = *workers_[loop];
    net::session_list& from = *run.from;
    const bool retire = run.kind == net::drain_kind::endpoint;
    const config::drain_config& cfg = *run.settings;
    const std::uint16_t code = retire ? codec::close_code::service_restart : cfg.close_code;
    const std::string_view reason = retire ? std::string_view(net::endpoint_drain_reason) : cfg.close_reason;
    auto close_one = [&] {
        net::session_link& s = from.front();
        s.unlink();
        w.closing().push_back(s);
        if (const auto& hint = cfg.reconnect_hint)
            s.drain_close(code, config::with_reconnect_hint(reason, config::draw_retry_after(*hint, w.random())),
                          run.kind);
        else
            s.drain_close(code, std::string(reason), run.kind);
    };
    const std::uint64_t due = run.pacer.due(clock::now());
    for (; run.issued < due && !from.empty(); ++run.issued) close_one();
    if (!from.empty() && run.issued >= run.pacer.count()) {  // upgraded after the count was taken
        while (!from.empty()) close_one();
    }
    run.asked = run.issued;
    if (from.empty()) {
        run.running = false;
        return;
    }
    run.timer->expires_at(run.pacer.when(run.issued));
    run.timer->async_wait([this, loop, &run](const boost::system::error_code& ec) {
        if (!ec) pace(loop, run);
    });
}

void drain_shell::force(std::size_t loop) {
    loops_[loop].full.timer->cancel();
    loops_[loop].partial.timer->cancel();
    loops_[loop].partial.running = false;
    loops_[loop].retire.timer->cancel();
    loops_[loop].retire.running = false;
    workers_[loop]->force_close_all();
}

// --- the drain of endpoints ----------------------------------------------------------------

asio::awaitable<std::uint64_t> drain_shell::retire(const std::vector<const routing::endpoint*>& endpoints) {
    std::uint64_t asked = 0;
    const auto t0 = clock::now();
    // Captured by address: GCC 12 may destroy a temporary of a co_await expression twice, so
    // the lambdas below hold nothing with a destructor. This frame keeps both alive meanwhile.
    const std::shared_ptr<const config::drain_config> settings = config_;
    const auto* cfg_of_run = &settings;
    for (std::size_t i = 0; i < workers_.size(); ++i) {
        asked += co_await asio::co_spawn(
            workers_[i]->context(),
            [this, i, &endpoints, t0, cfg_of_run]() -> asio::awaitable<std::uint64_t> {
                net::worker& w = *workers_[i];
                closing_run& run = loops_[i].retire;
                if (w.closing_sessions()) co_return 0;  // a full drain closes them all already
                std::uint64_t added = 0;
                for (auto it = w.sessions().begin(); it != w.sessions().end();) {
                    net::session_link& s = *it++;
                    if (std::find(endpoints.begin(), endpoints.end(), s.upstream_endpoint()) == endpoints.end()) continue;
                    s.unlink();
                    w.retiring().push_back(s);
                    ++added;
                }
                // Those not yet asked, and these, spread over a window from now.
                std::uint64_t n = 0;
                for ([[maybe_unused]] auto& s : w.retiring()) ++n;
                run.pacer = drain::pacer{t0, (*cfg_of_run)->spread, n};
                run.settings = *cfg_of_run;
                run.issued = 0;
                run.running = n > 0;
                if (n > 0) pace(i, run);
                co_return added;
            },
            asio::use_awaitable);
    }
    co_return asked;
}

asio::awaitable<void> drain_shell::unretire() {
    for (std::size_t i = 0; i < workers_.size(); ++i) {
        co_await asio::co_spawn(
            workers_[i]->context(),
            [this, i]() -> asio::awaitable<void> {
                net::worker& w = *workers_[i];
                for (auto it = w.retiring().begin(); it != w.retiring().end();) {
                    net::session_link& s = *it++;
                    if (s.upstream_endpoint() && s.upstream_endpoint()->drained()) continue;
                    s.unlink();
                    w.sessions().push_back(s);
                }
                co_return;
            },
            asio::use_awaitable);
    }
}

void drain_shell::set_config(const config::drain_config& cfg) {
    if (controller_.current() != drain::state::serving) return;  // the drain under way keeps its settings
    config_ = std::make_shared<const config::drain_config>(cfg);
    controller_ = drain::controller({cfg.pre_delay, cfg.spread, cfg.timeout});
}

// --- a partial drain ---------------------------------------------------------------------

asio::awaitable<std::string> drain_shell::start_partial(double fraction,
                                                        std::optional<std::chrono::milliseconds> spread) {
    if (controller_.current() != drain::state::serving)
        co_return std::string("the proxy is ") + drain::to_string(controller_.current()) +
            ": a partial drain would change nothing";
    if (partial_ && partial_running())
        co_return "a partial drain is under way (" + std::to_string(partial_->chosen) + " sessions chosen, " +
            std::to_string(partial_asked()) + " asked to close); start another once it is done";

    partial_drain p;
    p.fraction = fraction;
    p.spread = spread.value_or(config_->spread);
    p.started_wall = std::chrono::system_clock::now();
    p.sessions_at_start = sessions_open();
    std::tie(p.clean_before, p.forced_before) = partial_closed_counts();
    partial_ = p;

    // Count each loop's sessions per endpoint; one row per loop, one column per endpoint.
    std::vector<const routing::endpoint*> endpoints;
    std::unordered_map<const routing::endpoint*, std::size_t> column;
    std::vector<std::vector<endpoint_count>> per_loop;
    for (std::size_t i = 0; i < workers_.size(); ++i) {
        per_loop.push_back(co_await asio::co_spawn(workers_[i]->context(), count_sessions(i), asio::use_awaitable));
        for (const auto& c : per_loop.back())
            if (column.emplace(c.endpoint, endpoints.size()).second) endpoints.push_back(c.endpoint);
    }
    std::vector<std::vector<std::uint64_t>> counts(workers_.size(), std::vector<std::uint64_t>(endpoints.size()));
    for (std::size_t i = 0; i < workers_.size(); ++i)
        for (const auto& c : per_loop[i]) counts[i][column[c.endpoint]] = c.sessions;
    const auto quotas = drain::partial_quotas(counts, fraction);

    // Every loop paces its share over the same window.
    const auto t0 = clock::now();
    const std::shared_ptr<const config::drain_config> settings = config_;  // passed by address (GCC 12)
    std::uint64_t chosen = 0;
    for (std::size_t i = 0; i < workers_.size(); ++i) {
        std::vector<endpoint_count> quota;
        for (std::size_t e = 0; e < endpoints.size(); ++e)
            if (quotas[i][e] > 0) quota.push_back({endpoints[e], quotas[i][e]});
        chosen += co_await asio::co_spawn(workers_[i]->context(), choose_sessions(i, std::move(quota), t0, p.spread, &settings),
                                            asio::use_awaitable);
    }
    partial_->chosen = chosen;
    partial_->selecting = false;
    if (controller_.refusing()) partial_->superseded = true;  // a full drain began closing meanwhile
    log::info("partial drain started", {{"fraction", fraction},
                                        {"spread_s", std::chrono::duration<double>(p.spread).count()},
                                        {"sessions", p.sessions_at_start},
                                        {"chosen", chosen},
                                        {"endpoints", endpoints.size()}});
    co_return std::string{};
}

asio::awaitable<std::vector<drain_shell::endpoint_count>> drain_shell::count_sessions(std::size_t loop) {
    std::vector<endpoint_count> out;
    std::unordered_map<const routing::endpoint*, std::size_t> at;
    for (const auto& s : workers_[loop]->sessions()) {
        const auto [it, fresh] = at.emplace(s.upstream_endpoint(), out.size());
        if (fresh) out.push_back({s.upstream_endpoint(), 0});
        ++out[it->second].sessions;
    }
    co_return out;
}

asio::awaitable<std::uint64_t> drain_shell::choose_sessions(std::size_t loop, std::vector<endpoint_count> quota,
                                                            clock::time_point t0, std::chrono::milliseconds spread,
                                                            const std::shared_ptr<const config::drain_config>* cfg) {
    net::worker& w = *workers_[loop];
    closing_run& run = loops_[loop].partial;
    if (w.closing_sessions()) co_return 0;  // a full drain closes them all already
    // The oldest sessions of each endpoint, up to its quota (sessions that ended since the
    // count leave their endpoint's quota short).
    std::unordered_map<const routing::endpoint*, std::size_t> index;
    for (std::size_t e = 0; e < quota.size(); ++e) index.emplace(quota[e].endpoint, e);
    std::vector<std::vector<net::session_link*>> picked(quota.size());
    for (auto& s : w.sessions()) {
        const auto it = index.find(s.upstream_endpoint());
        if (it != index.end() && picked[it->second].size() < quota[it->second].sessions) picked[it->second].push_back(&s);
    }
    std::vector<std::uint64_t> sizes;
    for (const auto& p : picked) sizes.push_back(p.size());
    std::vector<std::size_t> next(quota.size(), 0);
    for (const std::size_t e : drain::interleave(sizes)) {
        net::session_link* s = picked[e][next[e]++];
        s->unlink();
        w.chosen().push_back(*s);
    }
    const std::uint64_t n = std::accumulate(sizes.begin(), sizes.end(), std::uint64_t{0});
    run.pacer = drain::pacer{t0, spread, n};
    run.settings = *cfg;
    run.issued = 0;
    run.asked = 0;
    run.running = n > 0;
    if (n > 0) pace(loop, run);
    co_return n;
}

bool drain_shell::partial_running() const {
    if (!partial_) return false;
    if (partial_->selecting) return true;
    return std::any_of(loops_.begin(), loops_.end(), [](const loop_state& l) { return l.partial.running.load(); });
}

std::uint64_t drain_shell::partial_asked() const {
    std::uint64_t n = 0;
    for (const auto& l : loops_) n += l.partial.asked.load(std::memory_order_relaxed);
    return n;
}

std::pair<std::uint64_t, std::uint64_t> drain_shell::partial_closed_counts() const {
    std::uint64_t clean = 0, forced = 0;
    for (const auto& w : workers_) {
        clean += w->stats().partial_closed_clean.value();
        forced += w->stats().partial_closed_forced.value();
    }
    return {clean, forced};
}

std::string drain_shell::partial_json() const {
    if (!partial_) return "null";
    const auto& p = *partial_;
    const auto [clean, forced] = partial_closed_counts();
    const char* state = partial_running() ? "closing" : p.superseded ? "superseded" : "done";
    char buf[512];
    std::snprintf(buf, sizeof buf,
                  "{\"state\":\"%s\",\"fraction\":%.4f,\"spread_seconds\":%.3f,\"started_at\":\"%s\","
                  "\"sessions_at_start\":%llu,\"chosen\":%llu,\"asked\":%llu,\"closed_clean\":%llu,"
                  "\"closed_forced\":%llu}",
                  state, p.fraction, std::chrono::duration<double>(p.spread).count(), rfc3339(p.started_wall).c_str(),
                  static_cast<unsigned long long>(p.sessions_at_start), static_cast<unsigned long long>(p.chosen),
                  static_cast<unsigned long long>(partial_asked()),
                  static_cast<unsigned long long>(clean - p.clean_before),
                  static_cast<unsigned long long>(forced - p.forced_before));
    return buf;
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
    char buf[1024];
    const std::string started =
        controller_.current() == drain::state::serving ? "null" : "\"" + rfc3339(started_wall_) + "\"";
    std::snprintf(buf, sizeof buf,
                  "{\"state\":\"%s\",\"started_at\":%s,\"elapsed_seconds\":%.3f,\"sessions_at_start\":%llu,"
                  "\"sessions_active\":%llu,\"closed_clean\":%llu,\"closed_forced\":%llu,\"progress\":%.4f,"
                  "\"partial_drain\":%s}\n",
                  drain::to_string(controller_.current()), started.c_str(), v.duration_seconds,
                  static_cast<unsigned long long>(controller_.sessions_at_start()),
                  static_cast<unsigned long long>(sessions_open()), static_cast<unsigned long long>(clean),
                  static_cast<unsigned long long>(forced), v.progress, partial_json().c_str());
    return buf;
}

asio::awaitable<bool> drain_shell::wait_drained(std::chrono::milliseconds timeout) {
    if (controller_.current() == drain::state::drained) co_return true;
    asio::steady_timer timer{co_await asio::this_coro::executor, timeout};
    const auto registered = waiters_.add(timer);
    co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
    co_return controller_.current() == drain::state::drained;
}

}  // namespace wsdrain::app
