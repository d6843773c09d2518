// Throughput of the frame scanner (Google Benchmark): how fast the relay can find frame
// boundaries in a stream, without I/O. Each case scans a 4 MiB stream of masked client
// frames (the stricter direction), fed in 64 KiB reads as the relay reads them:
//   - small: 64 B payloads, the chat-message case, where the per-frame work dominates;
//   - mixed: payloads cycling through 16 B, 125 B, 1 KiB, 16 KiB and 64 KiB, with a Ping now
//     and then (a control frame the scanner hands over whole);
//   - large: 1 MiB payloads, where the scanner skips payload it never touches.
//   build/tests/bench/wsdrain_scanner_bench [--benchmark_filter=...]
// Reported as bytes per second of stream scanned.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <cstring>
#include <vector>

#include "codec/frame.hpp"
#include "codec/frame_scanner.hpp"

namespace {

using namespace wsdrain::codec;

constexpr std::size_t stream_bytes = 4 << 20;
constexpr std::size_t read_size = 64 << 10;

void append_frame(std::vector<std::uint8_t>& out, std::uint8_t opcode, std::size_t payload) {
    out.push_back(static_cast<std::uint8_t>(0x80 | opcode));
    if (payload < 126) {
        out.push_back(static_cast<std::uint8_t>(0x80 | payload));
    } else if (payload <= 0xffff) {
        out.push_back(0x80 | 126);
        out.push_back(static_cast<std::uint8_t>(payload >> 8));
        out.push_back(static_cast<std::uint8_t>(payload));
    } else {
        out.push_back(0x80 | 127);
        for (int shift = 56; shift >= 0; shift -= 8) out.push_back(static_cast<std::uint8_t>(payload >> shift));
    }
    const std::uint8_t key[4] = {0x12, 0x34, 0x56, 0x78};
    out.insert(out.end(), key, key + 4);
    out.insert(out.end(), payload, 'x');
}

std::vector<std::uint8_t> make_stream(const std::vector<std::size_t>& sizes, bool pings) {
    std::vector<std::uint8_t> out;
    for (std::size_t i = 0; out.size() < stream_bytes; ++i) {
        append_frame(out, opcode::binary, sizes[i % sizes.size()]);
        if (pings && i % 16 == 15) append_frame(out, opcode::ping, 8);
    }
    return out;
}

void scan(benchmark::State& state, const std::vector<std::uint8_t>& stream) {
    std::uint64_t frames = 0;
    for (auto _ : state) {
        frame_scanner scanner{scan_policy{}};
        for (std::size_t at = 0; at < stream.size(); at += read_size) {
            const std::size_t n = std::min(read_size, stream.size() - at);
            const std::uint8_t* in = stream.data() + at;
            for (std::size_t pos = 0; pos < n;) {
                const scan_event e = scanner.next(in + pos, n - pos);
                if (e.kind == event_kind::error) state.SkipWithError("scan error");
                frames += e.frame_end;
                pos += e.consumed;
            }
        }
        benchmark::DoNotOptimize(frames);
    }
    state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * stream.size()));
    state.counters["frames/s"] = benchmark::Counter(static_cast<double>(frames), benchmark::Counter::kIsRate);
}

void small_frames(benchmark::State& state) {
    static const auto stream = make_stream({64}, false);
    scan(state, stream);
}

void mixed_frames(benchmark::State& state) {
    static const auto stream = make_stream({16, 125, 1024, 16384, 65536}, true);
    scan(state, stream);
}

void large_frames(benchmark::State& state) {
    static const auto stream = make_stream({1 << 20}, false);
    scan(state, stream);
}

BENCHMARK(small_frames);
BENCHMARK(mixed_frames);
BENCHMARK(large_frames);

}  // namespace

BENCHMARK_MAIN();
