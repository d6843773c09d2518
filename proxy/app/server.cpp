#include "app/server.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>

#include <boost/asio/use_awaitable.hpp>

#include <cstdio>
#include <future>
#include <stdexcept>

#include "log/log.hpp"

namespace wsdrain::app {

namespace {

std::int64_t steady_ns() {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
        .count();
}

std::vector<std::string> upstream_names(const config::proxy_config& cfg) {
    std::vector<std::string> names;
    for (const auto& u : cfg.upstreams) names.push_back(u.name);
    return names;
}

// Each loop proves it is alive once a second; /healthz checks the proofs.
void beat(asio::steady_timer& t, std::atomic<std::int64_t>& last) {
    last.store(steady_ns(), std::memory_order_relaxed);
    t.expires_after(std::chrono::seconds(1));
    t.async_wait([&t, &last](const boost::system::error_code& ec) {
        if (!ec) beat(t, last);
    });
}

}  // namespace

server::server(config::proxy_config cfg) : config_(std::move(cfg)) {
    unsigned n = config_.threads ? config_.threads : std::max(1u, std::thread::hardware_concurrency());
    metrics_ = std::make_unique<metrics::registry>(upstream_names(config_), n, version);
    live_ = std::make_shared<const http::live_config>(config_, nullptr, [this](const std::string& name) {
        return *metrics_->slot_of(name);  // the first config's names have their slots already
    });
    for (unsigned i = 0; i < n; ++i) workers_.push_back(std::make_unique<net::worker>(i, metrics_->shard(i)));
    heartbeats_.reset(new std::atomic<std::int64_t>[n]);
    for (unsigned i = 0; i < n; ++i) heartbeats_[i] = steady_ns();
    tls_ = std::make_unique<net::tls_contexts>();
    front_ = std::make_unique<http::front_context>(live_, n, config_.tls.has_value(), *tls_);
    health_ = std::make_unique<health::checker>(workers_[0]->context(), *tls_, [this](const routing::endpoint& e) {
        if (e.up()) wake_held();
    });
    drain_ = std::make_unique<drain_shell>(workers_, *front_, config_.drain);
    admin_hooks_.metrics = [this] { return metrics_text(); };
    admin_hooks_.healthy = [this] { return healthy(); };
    admin_hooks_.ready = [this] { return drain_->ready(); };
    admin_hooks_.drain_status = [this] { return drain_->status_json(); };
    admin_hooks_.start_drain = [this] { drain_->start(drain::trigger::admin); };
    admin_hooks_.start_partial_drain = [this](double fraction, std::optional<std::chrono::milliseconds> spread) {
        return drain_->start_partial(fraction, spread);
    };
    admin_hooks_.wait_drained = [this](std::chrono::milliseconds t) { return drain_->wait_drained(t); };
    admin_hooks_.reload = [this] { return reload(); };
    admin_hooks_.set_drained = [this](const std::string& upstream, const std::optional<std::string>& endpoint,
                                      bool drained) { return set_drained(upstream, endpoint, drained); };
    admin_hooks_.upstream_status = [this](std::string_view name) { return upstream_json(name); };
    admin_hooks_.upstreams_status = [this] { return upstreams_json(); };
    admin_hooks_.token = config_.admin.token;
}

server::~server() { stop(); }

tcp::acceptor server::bind(net::worker& w, const config::address& addr, bool reuse_port) {
    boost::system::error_code ec;
    auto ip = asio::ip::make_address(addr.host, ec);
    if (ec) {
        tcp::resolver resolver(w.context());
        auto results = resolver.resolve(addr.host, std::to_string(addr.port), ec);
        if (ec || results.empty()) throw std::runtime_error("cannot resolve " + addr.to_string() + ": " + ec.message());
        ip = results.begin()->endpoint().address();
    }
    tcp::endpoint ep{ip, addr.port};
    tcp::acceptor a{w.context()};
    a.open(ep.protocol());
    a.set_option(tcp::acceptor::reuse_address(true));
    a.set_option(tcp::no_delay(true));  // inherited by every accepted connection
    if (reuse_port) {
        const int one = 1;
        ::setsockopt(a.native_handle(), SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    }
    a.bind(ep, ec);
    if (ec) throw std::runtime_error("cannot listen on " + addr.to_string() + ": " + ec.message());
    a.listen(asio::socket_base::max_listen_connections, ec);
    if (!ec) a.non_blocking(true, ec);  // http::start_accepting's accept4 must not wait
    if (ec) throw std::runtime_error("cannot listen on " + addr.to_string() + ": " + ec.message());
    return a;
}

void server::start() {
    if (config_.tls) tls_->reload(config_.tls->cert, config_.tls->key);  // throws, naming the file
    // One acceptor per thread on the same port (SO_REUSEPORT): the kernel spreads clients.
    config::address listen = config_.listen;
    for (auto& w : workers_) {
        acceptors_.push_back(std::make_unique<tcp::acceptor>(bind(*w, listen, true)));
        listen.port = acceptors_.back()->local_endpoint().port();  // port 0: the others follow the first
    }
    listen_port_ = listen.port;
    admin_acceptor_ = std::make_unique<tcp::acceptor>(bind(*workers_[0], config_.admin.listen, false));
    admin_port_ = admin_acceptor_->local_endpoint().port();

    for (std::size_t i = 0; i < workers_.size(); ++i)
        asio::post(workers_[i]->context(), [this, i] { http::start_accepting(*workers_[i], *front_, *acceptors_[i]); });
    asio::co_spawn(workers_[0]->context(), admin::accept_loop(*workers_[0], *admin_acceptor_, admin_hooks_),
                   asio::detached);
    asio::post(workers_[0]->context(), [this] { health_->start(live_->router); });

    for (std::size_t i = 0; i < workers_.size(); ++i) {
        threads_.emplace_back([this, i] {
            net::worker& w = *workers_[i];
            auto guard = asio::make_work_guard(w.context());
            asio::steady_timer heartbeat{w.context()};
            beat(heartbeat, heartbeats_[i]);
            w.context().run();
        });
    }
    log::info("wsdrain started", {{"version", version},
                                  {"listen", config_.listen.host + ":" + std::to_string(listen_port_)},
                                  {"tls", config_.tls ? "on" : "off"},
                                  {"admin", config_.admin.listen.host + ":" + std::to_string(admin_port_)},
                                  {"threads", workers_.size()}});
}

void server::stop() {
    if (threads_.empty()) return;
    // The final teardown, after a drain (or of a test's proxy): each loop closes its listener
    // and ends whatever is left, then the loops are stopped and joined.
    std::vector<std::future<void>> done;
    for (std::size_t i = 0; i < workers_.size(); ++i) {
        auto p = std::make_shared<std::promise<void>>();
        done.push_back(p->get_future());
        asio::post(workers_[i]->context(), [this, i, p] {
            boost::system::error_code ec;
            acceptors_[i]->close(ec);
            if (i == 0) {
                admin_acceptor_->close(ec);
                health_->stop();
            }
            workers_[i]->force_close_all();
            p->set_value();
        });
    }
    for (auto& f : done) f.wait();
    for (auto& w : workers_) w->context().stop();
    for (auto& t : threads_) t.join();
    threads_.clear();
}

bool server::reload_tls() {
    if (!config_.tls) {
        log::info("nothing to reload: no tls in the config");
        return false;
    }
    try {
        tls_->reload(config_.tls->cert, config_.tls->key);
    } catch (const std::exception& e) {
        log::error("TLS reload failed; the previous certificate stays", {{"error", e.what()}});
        return false;
    }
    log::info("TLS certificate reloaded", {{"cert", config_.tls->cert}});
    return true;
}

std::string server::metrics_text() const {
    const metrics::drain_view drain = drain_->view();
    std::vector<metrics::endpoint_view> endpoints;
    for (const auto& u : live_->router.upstreams())
        for (const auto& e : u->endpoints()) endpoints.push_back({u->name(), e->name(), e->up()});
    return metrics_->serialize(drain, endpoints);
}

// --- reload ------------------------------------------------------------------------------

namespace {

std::string json_string(std::string_view text) {
    std::string out;
    log::append_json_string(out, text);
    return out;
}

std::string seconds_text(std::chrono::milliseconds d) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.3f", std::chrono::duration<double>(d).count());
    return buf;
}

std::string json_list(const std::vector<std::string>& items) {
    std::string out = "[";
    for (std::size_t i = 0; i < items.size(); ++i) out += (i ? "," : "") + json_string(items[i]);
    return out + "]";
}

// The keys of `next` that differ from `running` and that only a restart applies.
std::vector<std::string> restart_only_changes(const config::proxy_config& running, const config::proxy_config& next) {
    std::vector<std::string> keys;
    if (!(running.listen == next.listen)) keys.push_back("listen");
    if (running.threads != next.threads) keys.push_back("threads");
    if (!(running.admin.listen == next.admin.listen)) keys.push_back("admin.listen");
    if (running.admin.token != next.admin.token) keys.push_back("admin.token");
    if (running.tls.has_value() != next.tls.has_value() ||
        (running.tls && (running.tls->cert != next.tls->cert || running.tls->key != next.tls->key)))
        keys.push_back("tls");
    if (running.log.level != next.log.level || running.log.format != next.log.format) keys.push_back("log");
    return keys;
}

}  // namespace

void server::reload_from_signal() {
    asio::co_spawn(workers_[0]->context(), reload(), asio::detached);
}

asio::awaitable<admin::hook_reply> server::reload() {
    config_source_result next = source_ ? source_() : config_source_result{live_->config, {}};
    std::vector<std::string> errors = std::move(next.errors);
    if (next.config) {
        for (const auto& u : next.config->upstreams)
            if (!metrics_->slot_of(u.name))
                errors.push_back("upstreams: more than " + std::to_string(metrics::registry::max_upstream_names) +
                                 " upstream names in the life of the process; restart to add " + u.name);
    }
    if (!next.config || !errors.empty()) {
        metrics_->count_reload(false);
        std::string joined;
        for (const auto& e : errors) joined += (joined.empty() ? "" : "; ") + e;
        log::error("config reload failed; the running config stays", {{"errors", joined}});
        co_return admin::hook_reply{400, "{\"result\":\"error\",\"errors\":" + json_list(errors) + "}\n"};
    }
    const std::vector<std::string> restart = restart_only_changes(config_, *next.config);
    auto live = std::make_shared<const http::live_config>(*std::move(next.config), &live_->router,
                                                          [this](const std::string& name) { return *metrics_->slot_of(name); });
    co_await publish(live);
    drain_->set_config(live->config.drain);
    health_->start(live->router);
    wake_held();  // new or changed endpoints may take the held upgrades
    const bool tls_ok = !config_.tls || reload_tls();
    metrics_->count_reload(true);
    std::string upstreams;
    for (const auto& u : live->router.upstreams()) upstreams += (upstreams.empty() ? "" : ",") + u->name();
    log::info("config reloaded", {{"upstreams", upstreams},
                                  {"routes", live->config.routes.size()},
                                  {"needs_restart", json_list(restart)}});
    if (!restart.empty())
        log::warn("config reload: these keys changed and apply only after a restart", {{"keys", json_list(restart)}});
    co_return admin::hook_reply{200, "{\"result\":\"ok\",\"upstreams\":" + std::to_string(live->router.upstreams().size()) +
                                         ",\"routes\":" + std::to_string(live->config.routes.size()) +
                                         ",\"tls_reloaded\":" + (config_.tls && tls_ok ? "true" : "false") +
                                         ",\"needs_restart\":" + json_list(restart) + "}\n"};
}

asio::awaitable<void> server::publish(const std::shared_ptr<const http::live_config>& next) {
    live_ = next;
    // Two reloads may overlap here; each loop keeps the newest it was given.
    const std::uint64_t generation = ++live_generation_;
    // Only trivially destructible captures: GCC 12 may destroy a temporary of a co_await
    // expression twice. `next` lives in this frame until every loop has its copy.
    const std::shared_ptr<const http::live_config>* published = &next;
    for (std::size_t i = 0; i < workers_.size(); ++i) {
        co_await asio::co_spawn(
            workers_[i]->context(),
            [this, i, published, generation]() -> asio::awaitable<void> {
                if (generation > front_->live_generation[i]) {
                    front_->live[i] = *published;
                    front_->live_generation[i] = generation;
                }
                co_return;
            },
            asio::use_awaitable);
    }
}

void server::wake_held() {
    for (std::size_t i = 0; i < workers_.size(); ++i)
        asio::post(workers_[i]->context(), [this, i] { http::wake_held(*workers_[i], *front_); });
}

// --- the drain of upstreams and endpoints --------------------------------------------------

asio::awaitable<admin::hook_reply> server::set_drained(std::string upstream, std::optional<std::string> endpoint,
                                                       bool drained) {
    const auto live = live_;  // the router stays whatever a reload does meanwhile
    const routing::upstream* u = live->router.find(upstream);
    if (!u) co_return admin::hook_reply{404, "no upstream named " + json_string(upstream) + "\n"};
    std::vector<routing::endpoint*> targets;  // endpoints are shared, mutable state
    for (const auto& e : u->endpoints())
        if (!endpoint || e->name() == *endpoint) targets.push_back(e.get());
    if (targets.empty())
        co_return admin::hook_reply{404, "upstream " + json_string(upstream) + " has no endpoint " +
                                             json_string(*endpoint) + "\n"};
    if (drain_->view().state != 0)
        co_return admin::hook_reply{409, "the proxy is draining: every session is being closed already\n"};
    std::vector<std::string> names;
    for (auto* e : targets) {
        e->set_drained(drained);
        names.push_back(e->name());
    }
    std::uint64_t asked = 0;
    if (drained) {
        const std::vector<const routing::endpoint*> retiring(targets.begin(), targets.end());
        asked = co_await drain_->retire(retiring);
    } else {
        co_await drain_->unretire();
        wake_held();
    }
    log::info(drained ? "endpoints drained" : "endpoints undrained",
              {{"upstream", upstream}, {"endpoints", json_list(names)}, {"sessions_closing", asked}});
    co_return admin::hook_reply{202, upstream_json(*u) + "\n"};
}

std::string server::upstream_json(const routing::upstream& u) const {
    std::string out = "{\"name\":" + json_string(u.name()) +
                      ",\"held\":" + std::to_string(u.state().held.load(std::memory_order_relaxed)) +
                      ",\"hold_timeout_seconds\":" + seconds_text(u.config().hold_timeout) +
                      ",\"health_check\":" + (u.config().health_check ? "true" : "false") + ",\"endpoints\":[";
    int sessions = 0;
    for (std::size_t i = 0; i < u.endpoints().size(); ++i) {
        const auto& e = *u.endpoints()[i];
        sessions += e.active_sessions();
        out += std::string(i ? "," : "") + "{\"endpoint\":" + json_string(e.name()) +
               ",\"up\":" + (e.up() ? "true" : "false") + ",\"drained\":" + (e.drained() ? "true" : "false") +
               ",\"sessions\":" + std::to_string(e.active_sessions()) + "}";
    }
    return out + "],\"sessions\":" + std::to_string(sessions) + "}";
}

std::string server::upstream_json(std::string_view name) const {
    const routing::upstream* u = live_->router.find(name);
    return u ? upstream_json(*u) : std::string();
}

std::string server::upstreams_json() const {
    std::string out = "{\"upstreams\":[";
    const auto& all = live_->router.upstreams();
    for (std::size_t i = 0; i < all.size(); ++i) out += (i ? "," : "") + upstream_json(*all[i]);
    return out + "]}\n";
}

bool server::healthy() const {
    const std::int64_t now = steady_ns();
    for (std::size_t i = 0; i < workers_.size(); ++i)
        if (now - heartbeats_[i].load(std::memory_order_relaxed) > 5'000'000'000) return false;
    return true;
}

}  // namespace wsdrain::app
