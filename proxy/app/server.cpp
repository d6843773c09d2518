#include "app/server.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>

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

server::server(config::proxy_config cfg) : config_(std::move(cfg)), router_(config_) {
    unsigned n = config_.threads ? config_.threads : std::max(1u, std::thread::hardware_concurrency());
    metrics_ = std::make_unique<metrics::registry>(upstream_names(config_), n, version);
    for (unsigned i = 0; i < n; ++i) workers_.push_back(std::make_unique<net::worker>(i, metrics_->shard(i)));
    heartbeats_.reset(new std::atomic<std::int64_t>[n]);
    for (unsigned i = 0; i < n; ++i) heartbeats_[i] = steady_ns();
    tls_ = std::make_unique<net::tls_contexts>();
    front_ = std::make_unique<http::front_context>(config_, router_, *tls_);
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
    if (reuse_port) {
        const int one = 1;
        ::setsockopt(a.native_handle(), SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    }
    a.bind(ep, ec);
    if (ec) throw std::runtime_error("cannot listen on " + addr.to_string() + ": " + ec.message());
    a.listen(asio::socket_base::max_listen_connections, ec);
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
        asio::co_spawn(workers_[i]->context(), http::accept_loop(*workers_[i], *front_, *acceptors_[i]), asio::detached);
    asio::co_spawn(workers_[0]->context(), admin::accept_loop(*workers_[0], *admin_acceptor_, admin_hooks_),
                   asio::detached);

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
            if (i == 0) admin_acceptor_->close(ec);
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
    for (const auto& u : router_.upstreams())
        for (const auto& e : u->endpoints()) endpoints.push_back({u->name(), e->name(), e->up()});
    return metrics_->serialize(drain, endpoints);
}

bool server::healthy() const {
    const std::int64_t now = steady_ns();
    for (std::size_t i = 0; i < workers_.size(); ++i)
        if (now - heartbeats_[i].load(std::memory_order_relaxed) > 5'000'000'000) return false;
    return true;
}

}  // namespace wsdrain::app
