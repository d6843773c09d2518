// wsdrain: command line and wiring only (SPEC section 4).
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>

#include <sys/resource.h>

#include <cstring>
#include <functional>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include "app/cli.hpp"
#include "app/server.hpp"
#include "config/config.hpp"
#include "log/log.hpp"

namespace {

using namespace wsdrain;

constexpr const char* usage = R"(wsdrain - a WebSocket reverse proxy with graceful drain

Usage:
  wsdrain [--config FILE] [--listen ADDR] [--upstream HOST:PORT] [--admin ADDR]
          [--log-level LEVEL] [--log-format text|json]
      Run the proxy. Flags override the file; with --upstream alone no file is needed.
      SIGHUP (or POST /reload) reads the file again for new sessions.
  wsdrain check --config FILE
      Validate a config file: prints "config OK", or FILE:LINE:COL: message per problem.
  wsdrain drain [--admin ADDR] [--wait] [--timeout DURATION]
      Start a drain through the admin API; with --wait show progress and exit 0 once
      drained, 1 on timeout (default 10m). Meant as a Kubernetes preStop hook.
  wsdrain drain --fraction F [--spread DURATION] [--admin ADDR] [--wait]
      A partial drain: close that share of the sessions (0 < F <= 1, evenly across
      endpoints) over DURATION (default drain.spread), then go on serving; with --wait
      until every chosen session has been asked to close.
  wsdrain drain --upstream NAME [--endpoint HOST:PORT] [--admin ADDR] [--wait]
      Drain one upstream (or one of its endpoints) while the proxy goes on serving: its
      sessions get Close 1012 over drain.spread, and it gets no new ones until undrained
      (or until it is down and passes its health check again); new upgrades go to its other
      endpoints, or are held. With --wait, until no session is left on it.
  wsdrain undrain --upstream NAME [--endpoint HOST:PORT] [--admin ADDR] [--wait]
      Give it new sessions again; with --wait, until it is up.
  wsdrain status [--admin ADDR]
      The drain status in words.
  wsdrain --version
  wsdrain --help

Addresses are HOST:PORT ([::1]:PORT for IPv6); drain and status also take http://HOST:PORT
(default 127.0.0.1:9901). A bearer token for the admin API comes from WSDRAIN_ADMIN_TOKEN.
)";

struct options {
    std::optional<std::string> config_file;
    std::optional<std::string> listen, upstream, admin, log_level, log_format;
};

// Parses "--flag VALUE" and "--flag=VALUE"; returns an error message or empty.
std::string parse_flags(const std::vector<std::string>& args, std::size_t first, options& o) {
    struct flag {
        const char* name;
        std::optional<std::string> options::*field;
    };
    static const flag flags[] = {{"--config", &options::config_file}, {"--listen", &options::listen},
                                 {"--upstream", &options::upstream},  {"--admin", &options::admin},
                                 {"--log-level", &options::log_level}, {"--log-format", &options::log_format}};
    for (std::size_t i = first; i < args.size(); ++i) {
        const std::string& a = args[i];
        const auto eq = a.find('=');
        const std::string name = a.substr(0, eq);
        const flag* f = nullptr;
        for (const auto& candidate : flags)
            if (name == candidate.name) f = &candidate;
        if (!f) return "unknown option '" + a + "' (see wsdrain --help)";
        if (eq != std::string::npos) o.*(f->field) = a.substr(eq + 1);
        else if (i + 1 < args.size()) o.*(f->field) = args[++i];
        else return std::string(f->name) + " needs a value";
    }
    return {};
}

// Builds the effective config: the file (or the defaults), then the flags. At start and on
// each reload.
app::config_source_result effective_config(const options& o) {
    app::config_source_result result;
    auto& errors = result.errors;
    config::proxy_config cfg;
    if (o.config_file) {
        auto loaded = config::load_file(*o.config_file);
        for (const auto& p : loaded.problems) errors.push_back(config::format_problem(*o.config_file, p));
        if (!loaded.ok()) return result;
        cfg = std::move(loaded.config);
    }
    auto address_flag = [&](const std::optional<std::string>& v, const char* name, config::address& out) {
        if (!v) return;
        if (auto a = config::parse_address(*v)) out = *a;
        else errors.push_back(std::string(name) + ": not an address: '" + *v + "' (HOST:PORT)");
    };
    address_flag(o.listen, "--listen", cfg.listen);
    address_flag(o.admin, "--admin", cfg.admin.listen);
    if (o.upstream) {
        config::address a;
        address_flag(o.upstream, "--upstream", a);
        cfg.upstreams = {{"default", {a}}};
        cfg.routes = {{"", "/", "default"}};
    }
    if (o.log_level) cfg.log.level = *o.log_level;
    if (o.log_format) {
        if (*o.log_format == "json") cfg.log.format = config::log_format::json;
        else if (*o.log_format == "text") cfg.log.format = config::log_format::text;
        else errors.push_back("--log-format: must be text or json");
    }
    for (const auto& p : config::validate(cfg))
        errors.push_back((o.config_file ? *o.config_file + ": " : std::string()) + p.message);
    if (errors.empty()) result.config = std::move(cfg);
    return result;
}

// Raises the soft descriptor limit to the hard one; says how many sessions that allows.
void raise_fd_limit() {
    rlimit rl{};
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return;
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    getrlimit(RLIMIT_NOFILE, &rl);
    // Two descriptors a session (client and backend), less a few for listeners and logs.
    log::info("file descriptor limit", {{"limit", static_cast<std::uint64_t>(rl.rlim_cur)},
                                        {"sessions_possible", static_cast<std::uint64_t>(rl.rlim_cur / 2 - 16)}});
}

int run(const options& o) {
    auto loaded = effective_config(o);
    for (const auto& e : loaded.errors) std::cerr << e << "\n";
    if (!loaded.config) return 1;
    auto& cfg = loaded.config;
    try {
        log::setup(cfg->log);
    } catch (const std::exception& e) {
        std::cerr << "log.level: " << e.what() << "\n";
        return 1;
    }
    raise_fd_limit();
    app::server server{*cfg};
    server.set_config_source([&o] { return effective_config(o); });
    // SIGTERM and SIGINT: the first drains, a second forces (the drain controller decides).
    // Installed before the listeners open, so that no signal can find the default action.
    boost::asio::io_context signals_context;
    // SIGHUP: the config is read again (with the TLS certificate and key).
    boost::asio::signal_set signals{signals_context, SIGTERM, SIGINT, SIGHUP};
    std::function<void(const boost::system::error_code&, int)> on_signal = [&](const boost::system::error_code& ec,
                                                                               int signo) {
        if (ec) return;
        const char* name = signo == SIGTERM ? "SIGTERM" : signo == SIGINT ? "SIGINT" : "SIGHUP";
        log::info("signal received", {{"signal", name}});
        if (signo == SIGHUP) server.reload_from_signal();
        else server.signal();
        signals.async_wait(on_signal);
    };
    signals.async_wait(on_signal);
    server.on_exit([&] { boost::asio::post(signals_context, [&] { signals.cancel(); }); });
    try {
        server.start();
    } catch (const std::exception& e) {
        log::error("start-up failed", {{"error", e.what()}});
        return 1;
    }
    signals_context.run();
    server.stop();
    log::info("wsdrain stopped");
    return 0;
}

int check(const options& o) {
    if (!o.config_file) {
        std::cerr << "wsdrain check: --config FILE is required\n";
        return 2;
    }
    auto loaded = config::load_file(*o.config_file);
    for (const auto& p : loaded.problems) std::cerr << config::format_problem(*o.config_file, p) << "\n";
    if (!loaded.ok()) return 1;
    std::cout << "config OK\n";
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    std::vector<std::string> args(argv, argv + argc);
    if (args.size() > 1 && (args[1] == "--help" || args[1] == "-h" || args[1] == "help")) {
        std::cout << usage;
        return 0;
    }
    if (args.size() > 1 && (args[1] == "--version" || args[1] == "version")) {
        std::cout << "wsdrain " << app::version << "\n";
        return 0;
    }
    if (args.size() > 1 && (args[1] == "drain" || args[1] == "undrain" || args[1] == "status")) {
        const std::vector<std::string> rest(args.begin() + 2, args.end());
        if (args[1] == "drain") return app::drain_command(rest);
        return args[1] == "undrain" ? app::undrain_command(rest) : app::status_command(rest);
    }
    const bool is_check = args.size() > 1 && args[1] == "check";
    options o;
    if (const std::string err = parse_flags(args, is_check ? 2 : 1, o); !err.empty()) {
        std::cerr << "wsdrain: " << err << "\n";
        return 2;
    }
    return is_check ? check(o) : run(o);
}
