#include "net/worker.hpp"

#include <atomic>
#include <random>

namespace wsdrain::net {

worker::worker(unsigned index, metrics::thread_shard& stats)
    : index_(index), stats_(stats), scratch_(new std::uint8_t[scratch_size]) {
    std::random_device rd;
    rng_ = (std::uint64_t{rd()} << 32 | rd()) | 1;
}

void worker::force_close_all() {
    // Each is unlinked before it is told: force_close() may end it (and unlink it) at once.
    for (session_list* list : {&sessions_, &chosen_, &retiring_, &closing_, &connections_})
        while (!list->empty()) {
            session_link& s = list->front();
            s.unlink();
            s.force_close();
        }
}

std::uint64_t worker::next_session_id() {
    static std::atomic<std::uint64_t> last{0};
    return last.fetch_add(1, std::memory_order_relaxed) + 1;
}

std::uint64_t worker::random() {
    rng_ ^= rng_ >> 12;
    rng_ ^= rng_ << 25;
    rng_ ^= rng_ >> 27;
    return rng_ * 0x2545F4914F6CDD1DULL;
}

}  // namespace wsdrain::net
