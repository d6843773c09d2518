#include "metrics/metrics.hpp"

#include <prometheus/metric_family.h>
#include <prometheus/text_serializer.h>

#include <sstream>

namespace wsdrain::metrics {

const char* to_string(direction d) { return d == direction::to_backend ? "to_backend" : "to_client"; }

const char* to_string(upgrade_result r) {
    static constexpr const char* names[] = {"ok", "rejected_draining", "rejected_limit", "backend_refused",
                                            "backend_error"};
    return names[static_cast<std::size_t>(r)];
}

const char* to_string(close_reason r) {
    static constexpr const char* names[] = {"client", "backend", "drain_clean", "drain_forced", "idle", "error"};
    return names[static_cast<std::size_t>(r)];
}

const char* to_string(drop_reason r) { return r == drop_reason::after_close ? "after_close" : "peer_gone"; }

registry::registry(std::vector<std::string> upstream_names, unsigned threads, std::string version)
    : upstream_names_(std::move(upstream_names)), version_(std::move(version)) {
    for (unsigned i = 0; i < threads; ++i) shards_.push_back(std::make_unique<thread_shard>(max_upstream_names));
}

std::optional<std::size_t> registry::slot_of(const std::string& name) {
    for (std::size_t i = 0; i < upstream_names_.size(); ++i)
        if (upstream_names_[i] == name) return i;
    if (upstream_names_.size() == max_upstream_names) return std::nullopt;
    upstream_names_.push_back(name);
    return upstream_names_.size() - 1;
}

registry::~registry() = default;

std::int64_t registry::sessions_active() const {
    std::int64_t n = 0;
    for (const auto& s : shards_)
        for (const auto& u : s->upstreams) n += u.sessions_active.value();
    return n;
}

namespace {

using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;

MetricFamily family(const char* name, const char* help, MetricType type) { return {name, help, type, {}}; }

ClientMetric sample(double value, MetricType type, std::vector<ClientMetric::Label> labels = {}) {
    ClientMetric m;
    m.label = std::move(labels);
    if (type == MetricType::Counter) m.counter.value = value;
    else m.gauge.value = value;
    return m;
}

template <std::size_t N, class Get>
ClientMetric histogram_sample(const std::array<double, N>& bounds, Get&& shard_hist, std::size_t shards,
                              std::vector<ClientMetric::Label> labels) {
    ClientMetric m;
    m.label = std::move(labels);
    std::array<std::uint64_t, N + 1> counts{};
    double sum = 0;
    for (std::size_t s = 0; s < shards; ++s) {
        const auto& h = shard_hist(s);
        for (std::size_t i = 0; i <= N; ++i) counts[i] += h.bucket(i);
        sum += h.sum();
    }
    std::uint64_t cumulative = 0;
    for (std::size_t i = 0; i < N; ++i) {
        cumulative += counts[i];
        m.histogram.bucket.push_back({cumulative, bounds[i]});
    }
    m.histogram.sample_count = cumulative + counts[N];
    m.histogram.sample_sum = sum;
    return m;
}

}  // namespace

std::string registry::serialize(const drain_view& drain, const std::vector<endpoint_view>& endpoints) const {
    std::vector<MetricFamily> out;
    const std::size_t shards = shards_.size();
    auto sum = [&](auto&& get) {
        double v = 0;
        for (const auto& s : shards_) v += static_cast<double>(get(*s));
        return v;
    };
    auto gauge_family = [&](const char* name, const char* help, double v) {
        out.push_back(family(name, help, MetricType::Gauge));
        out.back().metric.push_back(sample(v, MetricType::Gauge));
    };

    gauge_family("wsdrain_build_info", "Build information; always 1.", 1);
    out.back().metric.back().label = {{"version", version_}};
    gauge_family("wsdrain_state", "Proxy state: 0 serving, 1 draining, 2 drained.", drain.state);

    out.push_back(family("wsdrain_sessions_active", "Open WebSocket sessions.", MetricType::Gauge));
    for (std::size_t u = 0; u < upstream_names_.size(); ++u)
        out.back().metric.push_back(sample(sum([&](auto& s) { return s.upstreams[u].sessions_active.value(); }),
                                           MetricType::Gauge, {{"upstream", upstream_names_[u]}}));

    out.push_back(family("wsdrain_upgrades_held", "Upgrades waiting for a healthy, undrained endpoint.",
                         MetricType::Gauge));
    for (std::size_t u = 0; u < upstream_names_.size(); ++u)
        out.back().metric.push_back(sample(sum([&](auto& s) { return s.upstreams[u].upgrades_held.value(); }),
                                           MetricType::Gauge, {{"upstream", upstream_names_[u]}}));

    gauge_family("wsdrain_http_requests_in_flight", "Plain HTTP requests being proxied.",
                 sum([](auto& s) { return s.http_requests_in_flight.value(); }));

    out.push_back(family("wsdrain_accept_paused_total",
                         "Times accepting connections paused for a while, out of file descriptors or memory.",
                         MetricType::Counter));
    out.back().metric.push_back(sample(sum([](auto& s) { return s.accept_paused.value(); }), MetricType::Counter));

    // A counter family with one series per upstream and per value of an enum label.
    auto per_upstream = [&](const char* name, const char* help, const char* label, std::size_t values,
                            auto&& label_value, auto&& counter_of) {
        out.push_back(family(name, help, MetricType::Counter));
        for (std::size_t u = 0; u < upstream_names_.size(); ++u)
            for (std::size_t v = 0; v < values; ++v)
                out.back().metric.push_back(sample(sum([&](auto& s) { return counter_of(s.upstreams[u], v).value(); }),
                                                   MetricType::Counter,
                                                   {{label, label_value(v)}, {"upstream", upstream_names_[u]}}));
    };
    per_upstream("wsdrain_upgrades_total", "WebSocket upgrade requests by result.", "result", upgrade_result_count,
                 [](std::size_t v) { return to_string(static_cast<upgrade_result>(v)); },
                 [](const upstream_shard& u, std::size_t v) -> const counter& { return u.upgrades[v]; });
    per_upstream("wsdrain_sessions_closed_total", "Ended WebSocket sessions by reason.", "reason", close_reason_count,
                 [](std::size_t v) { return to_string(static_cast<close_reason>(v)); },
                 [](const upstream_shard& u, std::size_t v) -> const counter& { return u.sessions_closed[v]; });

    gauge_family("wsdrain_drain_started_timestamp_seconds", "Unix time the drain started; 0 while serving.",
                 drain.started_timestamp);
    gauge_family("wsdrain_drain_sessions_at_start", "Sessions open when the drain started.", drain.sessions_at_start);
    gauge_family("wsdrain_drain_sessions_remaining", "Sessions still open during the drain.", drain.sessions_remaining);
    gauge_family("wsdrain_drain_progress_ratio", "Share of the drain done, 0..1.", drain.progress);
    gauge_family("wsdrain_drain_duration_seconds", "Elapsed drain time; final once drained.", drain.duration_seconds);

    out.push_back(family("wsdrain_close_handshake_seconds", "Time from the first Close to a complete handshake.",
                         MetricType::Histogram));
    out.back().metric.push_back(histogram_sample(
        close_handshake_bounds, [&](std::size_t s) -> auto& { return shards_[s]->close_handshake; }, shards, {}));

    out.push_back(family("wsdrain_session_duration_seconds", "Lifetime of ended sessions.", MetricType::Histogram));
    for (std::size_t u = 0; u < upstream_names_.size(); ++u)
        out.back().metric.push_back(histogram_sample(
            session_duration_bounds, [&](std::size_t s) -> auto& { return shards_[s]->upstreams[u].session_duration; },
            shards, {{"upstream", upstream_names_[u]}}));

    out.push_back(family("wsdrain_frames_total", "WebSocket frames relayed or sent by the proxy.", MetricType::Counter));
    for (std::size_t d = 0; d < direction_count; ++d)
        out.back().metric.push_back(sample(sum([&](auto& s) { return s.frames[d].value(); }), MetricType::Counter,
                                           {{"direction", to_string(static_cast<direction>(d))}}));
    out.push_back(family("wsdrain_bytes_total", "Wire bytes of those frames.", MetricType::Counter));
    for (std::size_t d = 0; d < direction_count; ++d)
        out.back().metric.push_back(sample(sum([&](auto& s) { return s.bytes[d].value(); }), MetricType::Counter,
                                           {{"direction", to_string(static_cast<direction>(d))}}));
    out.push_back(family("wsdrain_frames_dropped_total", "Frames not relayed.", MetricType::Counter));
    for (std::size_t d = 0; d < direction_count; ++d)
        for (std::size_t r = 0; r < drop_reason_count; ++r)
            out.back().metric.push_back(sample(sum([&](auto& s) { return s.frames_dropped[d][r].value(); }),
                                               MetricType::Counter,
                                               {{"direction", to_string(static_cast<direction>(d))},
                                                {"reason", to_string(static_cast<drop_reason>(r))}}));

    out.push_back(family("wsdrain_config_reloads_total", "Config reloads (SIGHUP, POST /reload) by result.",
                         MetricType::Counter));
    out.back().metric.push_back(sample(static_cast<double>(reloads_ok_.value()), MetricType::Counter, {{"result", "ok"}}));
    out.back().metric.push_back(
        sample(static_cast<double>(reloads_error_.value()), MetricType::Counter, {{"result", "error"}}));

    out.push_back(family("wsdrain_upstream_endpoint_up",
                         "1 while an endpoint is healthy (by its health checks, or else by connect failures); a "
                         "drained endpoint may be up.",
                         MetricType::Gauge));
    for (const auto& e : endpoints)
        out.back().metric.push_back(
            sample(e.up ? 1 : 0, MetricType::Gauge, {{"endpoint", e.endpoint}, {"upstream", e.upstream}}));

    std::ostringstream os;
    prometheus::TextSerializer{}.Serialize(os, out);
    return os.str();
}

}  // namespace wsdrain::metrics
